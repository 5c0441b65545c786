// Helpers for the data tests: a temporary directory that removes itself, and file writers for
// the exact on-disk formats (CIFAR records, idx, gzip, PNG/JPEG through stb_image_write).
#pragma once
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "tests/support/testing.h"

namespace mdq::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mdq-data-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = mkdtemp(buf.data());
    REQUIRE(p != nullptr);
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return (std::filesystem::path(path_) / rel).string(); }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  out << text;
}

inline std::vector<uint8_t> gzip(const std::vector<uint8_t>& bytes) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<uint8_t> out(deflateBound(&z, bytes.size()) + 64);
  z.next_in = const_cast<uint8_t*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// An idx file of unsigned bytes with the given dims.
inline std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<uint8_t>(d >> 24));
    b.push_back(static_cast<uint8_t>(d >> 16));
    b.push_back(static_cast<uint8_t>(d >> 8));
    b.push_back(static_cast<uint8_t>(d));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// A deterministic test image: every byte a function of (seed, y, x, c).
inline data::Image pattern_image(int h, int w, int c, int seed) {
  data::Image img{h, w, c, std::vector<uint8_t>(static_cast<size_t>(h) * w * c)};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) img.at(y, x)[k] = static_cast<uint8_t>((seed * 37 + y * 11 + x * 5 + k * 67) & 255);
  return img;
}

// n images of 6x5x3 whose pixels encode their index; labels index % 4 (so label(i) is checkable).
inline std::shared_ptr<data::Dataset> synthetic_dataset(int64_t n, int classes = 4) {
  data::RawImages raw;
  raw.count = n;
  raw.height = 6;
  raw.width = 5;
  raw.channels = 3;
  for (int64_t i = 0; i < n; ++i) {
    data::Image img = pattern_image(6, 5, 3, static_cast<int>(i));
    raw.pixels.insert(raw.pixels.end(), img.pixels.begin(), img.pixels.end());
    raw.labels.push_back(static_cast<int32_t>(i % classes));
  }
  data::DatasetInfo info{"synthetic", 3, 6, 5, classes, {0.5f, 0.4f, 0.3f}, {0.2f, 0.25f, 0.3f}, {}};
  return std::make_shared<data::InMemoryDataset>(info, std::move(raw));
}

}  // namespace mdq::testing
