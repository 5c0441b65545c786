// Parsers for CIFAR binary records, idx arrays and gzip (see formats.h). Sizes read from a file
// are checked against the bytes actually present before anything is allocated or copied.
#include "data/formats.h"

#include <zlib.h>

#include <cstring>
#include <fstream>

#include "common/error.h"

namespace mdq::data {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  MDQ_CHECK(in, "data: cannot open '" << path << "' (missing or unreadable); check --data-dir");
  std::streamoff size = in.tellg();
  MDQ_CHECK(size >= 0, "data: cannot read the size of '" << path << "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  MDQ_CHECK(in, "data: reading '" << path << "' failed after " << in.gcount() << " of " << size << " bytes");
  return bytes;
}

std::vector<uint8_t> gunzip_if_needed(std::vector<uint8_t> bytes, const std::string& name, size_t max_bytes) {
  if (bytes.size() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) return bytes;
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  MDQ_CHECK(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK, "data: zlib inflateInit2 failed for '" << name << "'");
  std::vector<uint8_t> out;
  out.resize(std::min(max_bytes, std::max<size_t>(bytes.size() * 4, 1 << 16)));
  z.next_in = bytes.data();
  z.avail_in = static_cast<uInt>(bytes.size());  // idx files are far below 4 GiB compressed
  size_t produced = 0;
  int ret = Z_OK;
  while (true) {
    if (produced == out.size()) {
      if (out.size() >= max_bytes) {
        inflateEnd(&z);
        MDQ_FAIL("data: '" << name << "' inflates to more than " << max_bytes << " bytes; not a dataset file");
      }
      out.resize(std::min(max_bytes, out.size() * 2));
    }
    size_t room = std::min<size_t>(out.size() - produced, 1u << 30);
    z.next_out = out.data() + produced;
    z.avail_out = static_cast<uInt>(room);
    ret = inflate(&z, Z_NO_FLUSH);
    produced += room - z.avail_out;
    if (ret == Z_STREAM_END) break;
    if (ret != Z_OK && ret != Z_BUF_ERROR) break;
    if (ret == Z_BUF_ERROR && z.avail_in == 0) break;  // input ran out before the stream ended
  }
  std::string msg = z.msg ? z.msg : "";
  inflateEnd(&z);
  MDQ_CHECK(ret == Z_STREAM_END, "data: '" << name << "' is a truncated or corrupt gzip stream ("
                                           << (msg.empty() ? "ended early" : msg) << " after " << produced
                                           << " bytes of output)");
  out.resize(produced);
  return out;
}

RawImages parse_cifar(const uint8_t* bytes, size_t size, CifarKind kind, const std::string& name) {
  const size_t label_bytes = kind == CifarKind::Cifar10 ? 1 : 2;
  const size_t record = label_bytes + 3072;
  const int num_classes = kind == CifarKind::Cifar10 ? 10 : 100;
  MDQ_CHECK(size > 0 && size % record == 0,
            "data: '" << name << "' has " << size << " bytes, not a whole number of " << record
                      << "-byte CIFAR-" << num_classes << " records (truncated or the wrong file?)");
  RawImages out;
  out.count = static_cast<int64_t>(size / record);
  out.height = out.width = 32;
  out.channels = 3;
  out.pixels.resize(static_cast<size_t>(out.count) * 3072);
  out.labels.resize(static_cast<size_t>(out.count));
  if (kind == CifarKind::Cifar100) out.coarse_labels.resize(static_cast<size_t>(out.count));
  for (int64_t i = 0; i < out.count; ++i) {
    const uint8_t* r = bytes + static_cast<size_t>(i) * record;
    int label = r[label_bytes - 1];
    MDQ_CHECK(label < num_classes, "data: '" << name << "' record " << i << " has label " << label
                                             << ", outside [0, " << num_classes << ")");
    out.labels[i] = label;
    if (kind == CifarKind::Cifar100) {
      MDQ_CHECK(r[0] < 20, "data: '" << name << "' record " << i << " has coarse label " << int(r[0])
                                     << ", outside [0, 20)");
      out.coarse_labels[i] = r[0];
    }
    const uint8_t* planes = r + label_bytes;  // CHW in the file
    uint8_t* dst = out.pixels.data() + static_cast<size_t>(i) * 3072;
    for (int p = 0; p < 1024; ++p)
      for (int c = 0; c < 3; ++c) dst[p * 3 + c] = planes[c * 1024 + p];
  }
  return out;
}

IdxArray parse_idx(const uint8_t* bytes, size_t size, const std::string& name) {
  MDQ_CHECK(size >= 4, "data: '" << name << "' has " << size << " bytes, too short for an idx header");
  MDQ_CHECK(bytes[0] == 0 && bytes[1] == 0,
            "data: '" << name << "' has a bad idx magic (" << int(bytes[0]) << " " << int(bytes[1])
                      << " ...; expected 0 0 8 <ndims>): not an idx file, or still compressed");
  MDQ_CHECK(bytes[2] == 0x08, "data: '" << name << "' has idx element type 0x" << std::hex << int(bytes[2])
                                        << "; only unsigned bytes (0x08) are supported");
  int ndims = bytes[3];
  MDQ_CHECK(ndims >= 1 && ndims <= 4, "data: '" << name << "' claims " << ndims << " idx dimensions; expected 1..4");
  size_t header = 4 + 4 * static_cast<size_t>(ndims);
  MDQ_CHECK(size >= header, "data: '" << name << "' is truncated inside its idx header (" << size << " bytes)");
  IdxArray out;
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* p = bytes + 4 + 4 * d;
    uint64_t dim = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | p[3];
    out.dims.push_back(static_cast<int64_t>(dim));
    // A product past the file size is already wrong; stop before it can overflow.
    total = dim == 0 ? 0 : (total > (uint64_t(1) << 40) / dim ? (uint64_t(1) << 41) : total * dim);
  }
  MDQ_CHECK(total == size - header, "data: '" << name << "' has " << size - header
                                              << " data bytes but its idx dims need " << total
                                              << " (truncated or wrongly sized file)");
  out.data.assign(bytes + header, bytes + size);
  return out;
}

RawImages idx_to_images(const IdxArray& images, const IdxArray& labels, int num_classes,
                        const std::string& images_name, const std::string& labels_name) {
  MDQ_CHECK(images.dims.size() == 3, "data: '" << images_name << "' has " << images.dims.size()
                                               << " idx dims; an image file has 3 ([N, H, W])");
  MDQ_CHECK(labels.dims.size() == 1, "data: '" << labels_name << "' has " << labels.dims.size()
                                               << " idx dims; a label file has 1 ([N])");
  MDQ_CHECK(images.dims[0] == labels.dims[0], "data: '" << images_name << "' holds " << images.dims[0]
                                                       << " images but '" << labels_name << "' holds "
                                                       << labels.dims[0] << " labels");
  MDQ_CHECK(images.dims[1] > 0 && images.dims[2] > 0 && images.dims[1] <= 65536 && images.dims[2] <= 65536,
            "data: '" << images_name << "' has image size " << images.dims[1] << "x" << images.dims[2]);
  RawImages out;
  out.count = images.dims[0];
  out.height = static_cast<int>(images.dims[1]);
  out.width = static_cast<int>(images.dims[2]);
  out.channels = 1;
  out.pixels = images.data;
  out.labels.resize(static_cast<size_t>(out.count));
  for (int64_t i = 0; i < out.count; ++i) {
    int label = labels.data[static_cast<size_t>(i)];
    MDQ_CHECK(label < num_classes, "data: '" << labels_name << "' entry " << i << " has label " << label
                                             << ", outside [0, " << num_classes << ")");
    out.labels[i] = label;
  }
  return out;
}

}  // namespace mdq::data
