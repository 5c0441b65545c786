// Checkpoint files: round trip of several dtypes and shapes, atomic writes, and a clear refusal
// of every kind of bad file (missing, wrong magic, unsupported version, truncated, corrupt).
#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "engine/checkpoint.h"
#include "engine/quant/quantizer.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// A fresh folder per test case, so parallel ctest runs and stale files cannot interfere;
// removed with everything in it when the case ends.
struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/mdq_test_checkpoint.XXXXXX";
    REQUIRE(mkdtemp(pattern));
    path = pattern;
  }
  ~TempDir() { (void)std::system(("rm -rf '" + path + "'").c_str()); }
  operator const std::string&() const { return path; }
};

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d);
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  Tensor u8 = Tensor::empty({3, 5}, DType::U8);
  for (int i = 0; i < 15; ++i) u8.data<uint8_t>()[i] = static_cast<uint8_t>(17 * i);
  return {
      {"conv1.weight", testing::random_tensor({4, 3, 3, 3}, 1)},
      {"fc.bias", testing::random_tensor({10}, 2)},
      {"scalar", Tensor::from_vector({3.25f}, {})},
      {"empty", Tensor::zeros({0, 7})},
      {"labels", Tensor::from_vector_i32({-1, 0, 7, 2147483647}, {2, 2})},
      {"bits", u8},
  };
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const uint8_t* p = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

}  // namespace

TEST_CASE("checkpoint round trip keeps names, order, dtypes, shapes, bytes and metadata") {
  const TempDir tmp;
  const std::string dir = tmp, path = dir + "/model.ckpt";
  const auto tensors = sample_tensors();
  using namespace std::string_literals;
  const std::string metadata = "method=md-tanh-s\nbeta=1.02\niter=30000\n\0binary-safe"s;
  save_checkpoint(path, tensors, metadata);
  Checkpoint ck = load_checkpoint(path);
  REQUIRE(ck.metadata == metadata);
  REQUIRE(ck.path == path);
  REQUIRE(ck.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO("tensor " << tensors[i].first);
    REQUIRE(ck.tensors[i].first == tensors[i].first);
    const Tensor& t = ck.tensors[i].second;
    REQUIRE(t.device() == Device::CPU);
    REQUIRE(t.dtype() == tensors[i].second.dtype());
    REQUIRE(t.shape() == tensors[i].second.shape());
    REQUIRE(bytes_of(t) == bytes_of(tensors[i].second));
  }
  REQUIRE(ck.get("labels").to_vector_i32() == std::vector<int32_t>{-1, 0, 7, 2147483647});
  REQUIRE(ck.has("bits"));
  REQUIRE_FALSE(ck.has("nope"));
  REQUIRE_THROWS_WITH(ck.get("fc.weight"), Catch::Contains("no tensor named 'fc.weight'") && Catch::Contains(path) &&
                                               Catch::Contains("fc.bias"));
  // Saving again replaces the file, and nothing but the file is left in the folder.
  save_checkpoint(path, {{"only", Tensor::from_vector({1, 2}, {2})}}, "");
  REQUIRE(load_checkpoint(path).tensors.size() == 1);
  REQUIRE(list_dir(dir) == std::vector<std::string>{"model.ckpt"});
}

TEST_CASE("optimizer state saves and restores through a checkpoint") {
  const TempDir tmp;
  const std::string path = tmp.path + "/optim.ckpt";
  quant::QuantConfig cfg;
  cfg.method = "float";  // the Quantizer is the optimizer: float + Adam is plain Adam (E8)
  nn::ParamRef p{"w", Var(Tensor::from_vector({1, -2}, {2}), true), nn::ParamKind::Weight, 2, 2};
  quant::Quantizer adam({p}, cfg);
  p.var.accumulate_grad(Tensor::from_vector({0.5f, -1.0f}, {2}));
  adam.step(0.1f);
  std::vector<std::pair<std::string, Tensor>> saved;
  for (auto& [name, t] : adam.state()) saved.emplace_back(name, *t);
  save_checkpoint(path, saved, adam.state_metadata());
  nn::ParamRef q{"w", Var(Tensor::from_vector({1, -2}, {2}), true), nn::ParamKind::Weight, 2, 2};
  quant::Quantizer restored({q}, cfg);
  Checkpoint ck = load_checkpoint(path);
  for (auto& [name, t] : restored.state()) t->copy_from(ck.get(name));
  restored.load_state_metadata(ck.metadata);
  restored.refresh_primal();
  REQUIRE(restored.params()[0].steps == 1);
  REQUIRE(q.var.value().to_vector() == p.var.value().to_vector());
  q.var.accumulate_grad(Tensor::from_vector({-0.25f, 2.0f}, {2}));
  p.var.zero_grad();
  p.var.accumulate_grad(Tensor::from_vector({-0.25f, 2.0f}, {2}));
  adam.step(0.1f);
  restored.step(0.1f);
  REQUIRE(q.var.value().to_vector() == p.var.value().to_vector());
}

TEST_CASE("bad checkpoint files are refused with a message naming the file and the problem") {
  const TempDir tmp;
  const std::string dir = tmp, path = dir + "/good.ckpt";
  save_checkpoint(path, sample_tensors(), "meta");
  const std::string good = read_file(path);
  const std::string bad = dir + "/bad.ckpt";

  SECTION("missing file") {
    REQUIRE_THROWS_WITH(load_checkpoint(dir + "/absent.ckpt"),
                        Catch::Contains(dir + "/absent.ckpt") && Catch::Contains("cannot open"));
  }
  SECTION("wrong magic") {
    std::string b = good;
    b[3] = 'X';
    write_file(bad, b);
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains(bad) && Catch::Contains("not an mdq checkpoint"));
    write_file(bad, "hello");
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains("not an mdq checkpoint"));
  }
  SECTION("unsupported version") {
    std::string b = good;
    b[8] = 7;
    write_file(bad, b);
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains(bad) && Catch::Contains("unsupported version 7"));
  }
  SECTION("truncated anywhere") {
    for (size_t keep : {size_t{10}, size_t{20}, good.size() / 2, good.size() - 9, good.size() - 1}) {
      INFO("kept " << keep << " of " << good.size() << " bytes");
      write_file(bad, good.substr(0, keep));
      REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains(bad) && (Catch::Contains("truncated") ||
                                                                         Catch::Contains("checksum mismatch")));
    }
    write_file(bad, good.substr(0, good.size() / 2));
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains("truncated"));
  }
  SECTION("a flipped byte in the data") {
    std::string b = good;
    b[b.size() - 20] ^= 0x10;  // inside the last tensor's bytes
    write_file(bad, b);
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains(bad) && Catch::Contains("corrupt: checksum mismatch"));
  }
  SECTION("a flipped byte anywhere after the version is refused") {
    for (size_t at = 12; at < good.size(); at += 7) {
      std::string b = good;
      b[at] ^= 0x40;
      write_file(bad, b);
      INFO("flipped byte " << at);
      REQUIRE_THROWS_AS(load_checkpoint(bad), Error);
    }
  }
  SECTION("absurd sizes in a header are refused before allocating") {
    std::string b = good;
    for (int i = 12; i < 20; ++i) b[i] = '\xff';  // the metadata length
    write_file(bad, b);
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains("truncated or corrupt") && Catch::Contains("metadata"));
  }
  SECTION("trailing bytes") {
    write_file(bad, good + "junk");
    REQUIRE_THROWS_WITH(load_checkpoint(bad), Catch::Contains(bad) && Catch::Contains("corrupt"));
  }
}

TEST_CASE("save_checkpoint refuses bad names and leaves no temporary file when it fails") {
  const TempDir tmp;
  const std::string dir = tmp;
  REQUIRE_THROWS_WITH(save_checkpoint(dir + "/a.ckpt", {{"x", Tensor::zeros({1})}, {"x", Tensor::zeros({2})}}, ""),
                      Catch::Contains("'x' appears twice"));
  REQUIRE_THROWS_WITH(save_checkpoint(dir + "/a.ckpt", {{"", Tensor::zeros({1})}}, ""), Catch::Contains("empty"));
  REQUIRE_THROWS_WITH(save_checkpoint(dir + "/a.ckpt", {{"u", Tensor()}}, ""), Catch::Contains("'u' is undefined"));
  REQUIRE_THROWS_WITH(save_checkpoint(dir + "/no/such/dir/a.ckpt", {}, ""), Catch::Contains("cannot create"));
  REQUIRE(list_dir(dir).empty());
}

TEST_CASE("CheckpointWriter writes save_checkpoint's bytes from a snapshot, and reports a failed write") {
  const TempDir tmp;
  const std::string dir = tmp;
  std::vector<std::pair<std::string, Tensor>> tensors = sample_tensors();
  save_checkpoint(dir + "/sync.ckpt", tensors, "meta");
  {
    CheckpointWriter writer;
    writer.save(dir + "/async.ckpt", tensors, "meta");
    // Training may change the tensors at once: the file holds them as they were at save().
    for (auto& [name, t] : tensors)
      if (t.dtype() == DType::F32) t.fill_(-7.f);
    writer.save(dir + "/second.ckpt", tensors, "meta2");  // waits for the first
    writer.wait();
    REQUIRE(read_file(dir + "/async.ckpt") == read_file(dir + "/sync.ckpt"));
    REQUIRE(load_checkpoint(dir + "/second.ckpt").metadata == "meta2");
  }
  CheckpointWriter writer;
  writer.save(dir + "/no/such/dir/a.ckpt", tensors, "");
  REQUIRE_THROWS_WITH(writer.wait(), Catch::Contains("no/such/dir/a.ckpt") && Catch::Contains("cannot create"));
  writer.wait();  // reported once
  writer.save(dir + "/bad.ckpt", {{"u", Tensor()}}, "");
  REQUIRE_THROWS_WITH(writer.save(dir + "/next.ckpt", tensors, ""), Catch::Contains("'u' is undefined"));
}
