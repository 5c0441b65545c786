// Checkpoint file I/O: a streaming writer and reader that hash every byte they move (FNV-1a 64)
// and check every size in a header against the bytes the file actually has left.
#include "engine/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <utility>

namespace mdq {
namespace {

constexpr char kMagic[8] = {'M', 'D', 'Q', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kMaxName = 1 << 16;
constexpr int kMaxDims = 16;

struct Fnv1a64 {
  uint64_t h = 0xcbf29ce484222325ull;
  void update(const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
};

bool host_is_little_endian() {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

std::string errno_text() { return std::strerror(errno); }

class Writer {
 public:
  Writer(FILE* f, const std::string& path) : f_(f), path_(path) {}
  void bytes(const void* p, size_t n) {
    hash_.update(p, n);
    raw(p, n);
  }
  void raw(const void* p, size_t n) {
    MDQ_CHECK(n == 0 || std::fwrite(p, 1, n, f_) == n, "save_checkpoint '" << path_ << "': write failed: " << errno_text());
  }
  template <class T> void uint(T v) {  // little-endian, whatever the host
    unsigned char b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<unsigned char>(static_cast<uint64_t>(v) >> (8 * i));
    bytes(b, sizeof(T));
  }
  uint64_t hash() const { return hash_.h; }

 private:
  FILE* f_;
  const std::string& path_;
  Fnv1a64 hash_;
};

class Reader {
 public:
  Reader(FILE* f, const std::string& path, uint64_t payload) : f_(f), path_(path), left_(payload) {}
  // Says the file is truncated (or a size in it is corrupt) unless n more payload bytes exist.
  // Called before allocating anything of a size read from the file.
  void need(uint64_t n, const std::string& what) const {
    MDQ_CHECK(n <= left_, "load_checkpoint '" << path_ << "': truncated or corrupt: " << what << " needs " << n
                                              << " bytes, " << left_ << " left before the checksum");
  }
  // Reads n bytes of the payload (everything before the checksum), or says the file is truncated.
  void bytes(void* p, uint64_t n, const std::string& what) {
    need(n, what);
    raw(p, n);
    hash_.update(p, n);
    left_ -= n;
  }
  void raw(void* p, uint64_t n) {
    MDQ_CHECK(n == 0 || std::fread(p, 1, n, f_) == n, "load_checkpoint '" << path_ << "': read failed (file changed while reading?)");
  }
  template <class T> T uint(const std::string& what) {
    unsigned char b[sizeof(T)];
    bytes(b, sizeof(T), what);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return static_cast<T>(v);
  }
  uint64_t left() const { return left_; }
  uint64_t hash() const { return hash_.h; }

 private:
  FILE* f_;
  const std::string& path_;
  uint64_t left_;
  Fnv1a64 hash_;
};

void write_all(Writer& w, const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& metadata) {
  w.bytes(kMagic, sizeof(kMagic));
  w.uint<uint32_t>(kCheckpointVersion);
  w.uint<uint64_t>(metadata.size());
  w.bytes(metadata.data(), metadata.size());
  w.uint<uint64_t>(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    Tensor host = tensor.cpu();
    w.uint<uint32_t>(static_cast<uint32_t>(name.size()));
    w.bytes(name.data(), name.size());
    w.uint<uint8_t>(static_cast<uint8_t>(host.dtype()));
    w.uint<uint8_t>(static_cast<uint8_t>(host.ndim()));
    for (int64_t d : host.shape()) w.uint<uint64_t>(static_cast<uint64_t>(d));
    w.uint<uint64_t>(host.nbytes());
    w.bytes(host.raw(), host.nbytes());
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& metadata) {
  MDQ_CHECK(host_is_little_endian(), "save_checkpoint: tensor bytes are stored little-endian; this host is not");
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    MDQ_CHECK(!name.empty() && name.size() < kMaxName, "save_checkpoint '" << path << "': tensor name '" << name
                                                                           << "' is empty or too long");
    MDQ_CHECK(seen.insert(name).second, "save_checkpoint '" << path << "': tensor name '" << name << "' appears twice");
    MDQ_CHECK(tensor.defined(), "save_checkpoint '" << path << "': tensor '" << name << "' is undefined");
    MDQ_CHECK(tensor.ndim() <= kMaxDims, "save_checkpoint '" << path << "': tensor '" << name << "' has too many dims");
  }
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid()));
  FILE* f = std::fopen(tmp.c_str(), "wb");
  MDQ_CHECK(f, "save_checkpoint '" << path << "': cannot create '" << tmp << "': " << errno_text());
  try {
    Writer w(f, path);
    write_all(w, tensors, metadata);
    // The checksum covers everything before it, so it is written raw (unhashed).
    const uint64_t sum = w.hash();
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(sum >> (8 * i));
    w.raw(b, 8);
    MDQ_CHECK(std::fflush(f) == 0 && fsync(fileno(f)) == 0,
              "save_checkpoint '" << path << "': flush to disk failed: " << errno_text());
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  const bool closed = std::fclose(f) == 0;
  if (!closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    std::remove(tmp.c_str());
    MDQ_FAIL("save_checkpoint '" << path << "': cannot " << (closed ? "rename '" + tmp + "' over it" : "close the file")
                                 << ": " << why);
  }
  // Make the rename itself durable (best effort: not every filesystem lets a directory be fsync'ed).
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}


Checkpoint load_checkpoint(const std::string& path) {
  MDQ_CHECK(host_is_little_endian(), "load_checkpoint: tensor bytes are stored little-endian; this host is not");
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  MDQ_CHECK(file, "load_checkpoint '" << path << "': cannot open: " << errno_text());
  FILE* f = file.get();
  struct stat st;
  MDQ_CHECK(fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode),
            "load_checkpoint '" << path << "': not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  char magic[sizeof(kMagic)];
  const size_t got = std::fread(magic, 1, sizeof(magic), f);
  MDQ_CHECK(got == sizeof(kMagic) && std::memcmp(magic, kMagic, sizeof(kMagic)) == 0,
            "load_checkpoint '" << path << "': not an mdq checkpoint ("
                                << (got < sizeof(kMagic) ? "only " + std::to_string(size) + " bytes" : "wrong magic")
                                << ")");
  MDQ_CHECK(size >= sizeof(kMagic) + 4 + 8, "load_checkpoint '" << path << "': truncated: only " << size << " bytes");
  std::rewind(f);
  Reader r(f, path, size - 8);
  r.bytes(magic, sizeof(magic), "the magic");
  const uint32_t version = r.uint<uint32_t>("the version");
  MDQ_CHECK(version == kCheckpointVersion, "load_checkpoint '" << path << "': unsupported version " << version
                                                               << " (this build reads version " << kCheckpointVersion
                                                               << ")");
  Checkpoint ck;
  ck.path = path;
  const uint64_t meta_size = r.uint<uint64_t>("the metadata length");
  r.need(meta_size, "the metadata");
  ck.metadata.resize(meta_size);
  r.bytes(ck.metadata.data(), meta_size, "the metadata");

  const uint64_t count = r.uint<uint64_t>("the tensor count");
  const uint64_t min_record = 4 + 1 + 1 + 8;
  r.need(count > r.left() / min_record ? r.left() + 1 : count * min_record,
         "the tensor count (" + std::to_string(count) + ")");
  std::set<std::string> seen;
  for (uint64_t k = 0; k < count; ++k) {
    const std::string rec = "tensor " + std::to_string(k);
    const uint32_t name_size = r.uint<uint32_t>(rec + "'s name length");
    MDQ_CHECK(name_size > 0 && name_size < kMaxName,
              "load_checkpoint '" << path << "': corrupt: " << rec << " has a name of " << name_size << " bytes");
    r.need(name_size, rec + "'s name");
    std::string name(name_size, '\0');
    r.bytes(name.data(), name_size, rec + "'s name");
    const std::string what = "tensor '" + name + "'";
    MDQ_CHECK(seen.insert(name).second, "load_checkpoint '" << path << "': corrupt: " << what << " appears twice");
    const uint8_t dtype = r.uint<uint8_t>(what + "'s dtype");
    MDQ_CHECK(dtype <= static_cast<uint8_t>(DType::I16),  // the last code
              "load_checkpoint '" << path << "': corrupt: " << what << " has unknown dtype code " << int(dtype));
    const uint8_t ndim = r.uint<uint8_t>(what + "'s rank");
    MDQ_CHECK(ndim <= kMaxDims, "load_checkpoint '" << path << "': corrupt: " << what << " has " << int(ndim) << " dims");
    const uint64_t elem = dtype_size(static_cast<DType>(dtype));
    Shape shape;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; ++d) {
      const uint64_t extent = r.uint<uint64_t>(what + "'s shape");
      // The data must fit in what is left of the file: this bounds every allocation.
      MDQ_CHECK(extent == 0 || numel == 0 || numel <= r.left() / elem / extent,
                "load_checkpoint '" << path << "': truncated or corrupt: " << what << " has dimension " << extent
                                    << ", more than the " << r.left() << " bytes left can hold");
      numel *= extent;
      shape.push_back(static_cast<int64_t>(extent));
    }
    const uint64_t nbytes = r.uint<uint64_t>(what + "'s byte count");
    MDQ_CHECK(nbytes == numel * elem, "load_checkpoint '" << path << "': corrupt: " << what << " declares " << nbytes
                                                          << " bytes but " << dtype_name(static_cast<DType>(dtype))
                                                          << shape_str(shape) << " needs " << numel * elem);
    r.need(nbytes, what + "'s data");
    Tensor t = Tensor::empty(shape, static_cast<DType>(dtype), Device::CPU);
    r.bytes(t.raw(), nbytes, what + "'s data");
    ck.tensors.emplace_back(name, std::move(t));
  }
  MDQ_CHECK(r.left() == 0, "load_checkpoint '" << path << "': corrupt: " << r.left()
                                               << " unexpected bytes after the last tensor");
  unsigned char b[8];
  r.raw(b, 8);
  uint64_t stored = 0;
  for (int i = 0; i < 8; ++i) stored |= static_cast<uint64_t>(b[i]) << (8 * i);
  MDQ_CHECK(stored == r.hash(), "load_checkpoint '" << path << "': corrupt: checksum mismatch (stored " << std::hex
                                                    << stored << ", computed " << r.hash() << ")");
  return ck;
}

bool Checkpoint::has(const std::string& name) const {
  for (const auto& entry : tensors)
    if (entry.first == name) return true;
  return false;
}

const Tensor& Checkpoint::get(const std::string& name) const {
  for (const auto& entry : tensors)
    if (entry.first == name) return entry.second;
  std::string names;
  for (size_t i = 0; i < tensors.size() && i < 12; ++i) names += (i ? ", " : "") + tensors[i].first;
  if (tensors.size() > 12) names += ", ... (" + std::to_string(tensors.size()) + " in all)";
  MDQ_FAIL("checkpoint '" << path << "' has no tensor named '" << name << "' (it has: "
                          << (names.empty() ? "none" : names) << ")");
}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint: %s\n", e.what());
  }
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void CheckpointWriter::save(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                            std::string metadata) {
  // The snapshot first (a device tensor's copy waits for the GPU; a host one is cloned), then the
  // previous write's end: both take time, and the copies need not wait for the disk.
  std::vector<std::pair<std::string, Tensor>> host;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors)
    host.emplace_back(name, !t.defined() ? Tensor() : t.is_cuda() ? t.cpu() : t.clone());  // undefined: save_checkpoint says so
  wait();
  thread_ = std::thread([this, path, host = std::move(host), metadata = std::move(metadata)] {
    try {
      save_checkpoint(path, host, metadata);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

}  // namespace mdq
