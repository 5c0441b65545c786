// Bad input: each case must raise mdq::Error naming the file (or folder) and what is wrong;
// never a crash, a hang or silently wrong data.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "tests/cpu/test_data_support.h"

using namespace mdq;
using namespace mdq::data;
using Catch::Contains;
using mdq::testing::TempDir;

namespace {

std::vector<uint8_t> cifar10_records(int n, uint8_t label = 3) {
  std::vector<uint8_t> b;
  for (int r = 0; r < n; ++r) {
    b.push_back(label);
    b.insert(b.end(), 3072, static_cast<uint8_t>(r));
  }
  return b;
}

void write_cifar10(const TempDir& dir) {
  for (int b = 1; b <= 5; ++b) testing::write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifar10_records(2));
  testing::write_bytes(dir / "test_batch.bin", cifar10_records(2));
}

void write_fashion(const TempDir& dir) {
  testing::write_bytes(dir / "train-images-idx3-ubyte", testing::idx_bytes({2, 28, 28}, std::vector<uint8_t>(2 * 784, 9)));
  testing::write_bytes(dir / "train-labels-idx1-ubyte", testing::idx_bytes({2}, {1, 2}));
  testing::write_bytes(dir / "t10k-images-idx3-ubyte", testing::idx_bytes({1, 28, 28}, std::vector<uint8_t>(784, 9)));
  testing::write_bytes(dir / "t10k-labels-idx1-ubyte", testing::idx_bytes({1}, {0}));
}

}  // namespace

TEST_CASE("a missing data dir or dataset file names the path") {
  REQUIRE_THROWS_WITH(load_dataset("cifar10", "/nonexistent/mdq-data", 0), Contains("/nonexistent/mdq-data") && Contains("missing"));
  TempDir dir;
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains(dir.str()) && Contains("data_batch_1.bin"));
  write_cifar10(dir);
  std::filesystem::remove(dir / "data_batch_4.bin");
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("data_batch_4.bin") && Contains("cannot open"));
  REQUIRE_THROWS_WITH(load_dataset("cifar11", dir.str(), 0), Contains("unknown dataset 'cifar11'"));
}

TEST_CASE("a truncated or wrongly sized CIFAR file names the file and the record size") {
  TempDir dir;
  write_cifar10(dir);
  std::vector<uint8_t> bytes = cifar10_records(2);
  bytes.resize(bytes.size() - 100);
  testing::write_bytes(dir / "data_batch_2.bin", bytes);
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("data_batch_2.bin") && Contains("3073-byte"));
  testing::write_bytes(dir / "data_batch_2.bin", {});
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("data_batch_2.bin") && Contains("0 bytes"));
  // CIFAR-100 records in a CIFAR-10 name: 3074 bytes each, not a multiple of 3073.
  std::vector<uint8_t> c100(3074 * 3, 1);
  REQUIRE_THROWS_WITH(parse_cifar(c100.data(), c100.size(), CifarKind::Cifar10, "x.bin"), Contains("x.bin"));
}

TEST_CASE("an out-of-range label names the file and the record") {
  TempDir dir;
  write_cifar10(dir);
  testing::write_bytes(dir / "data_batch_3.bin", cifar10_records(2, 10));
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0),
                      Contains("data_batch_3.bin") && Contains("record 0") && Contains("label 10"));
  std::vector<uint8_t> c100(3074, 0);
  c100[0] = 20;  // coarse label out of range
  REQUIRE_THROWS_WITH(parse_cifar(c100.data(), c100.size(), CifarKind::Cifar100, "train.bin"), Contains("coarse label 20"));
  TempDir idx;
  write_fashion(idx);
  testing::write_bytes(idx / "train-labels-idx1-ubyte", testing::idx_bytes({2}, {1, 10}));
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", idx.str(), 0),
                      Contains("train-labels-idx1-ubyte") && Contains("entry 1") && Contains("label 10"));
}

TEST_CASE("bad idx magic, wrong sizes and truncated gzip name the file") {
  TempDir dir;
  write_fashion(dir);
  std::vector<uint8_t> bad = testing::idx_bytes({2, 28, 28}, std::vector<uint8_t>(2 * 784, 9));
  bad[1] = 7;
  testing::write_bytes(dir / "train-images-idx3-ubyte", bad);
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("train-images-idx3-ubyte") && Contains("bad idx magic"));
  bad[1] = 0;
  bad[2] = 0x0D;  // float elements
  testing::write_bytes(dir / "train-images-idx3-ubyte", bad);
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("element type 0xd"));
  testing::write_bytes(dir / "train-images-idx3-ubyte", testing::idx_bytes({2, 28, 28}, std::vector<uint8_t>(784, 9)));
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("train-images-idx3-ubyte") && Contains("truncated"));
  testing::write_bytes(dir / "train-images-idx3-ubyte", testing::idx_bytes({3, 28, 28}, std::vector<uint8_t>(3 * 784, 9)));
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("3 images") && Contains("2 labels"));
  testing::write_bytes(dir / "train-images-idx3-ubyte", testing::idx_bytes({2, 32, 32}, std::vector<uint8_t>(2 * 1024, 9)));
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("32x32"));
  // Huge dims must not allocate or overflow.
  std::vector<uint8_t> huge = testing::idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {1, 2, 3});
  REQUIRE_THROWS_WITH(parse_idx(huge.data(), huge.size(), "huge"), Contains("huge"));

  std::filesystem::remove(dir / "train-images-idx3-ubyte");
  std::vector<uint8_t> gz = testing::gzip(testing::idx_bytes({2, 28, 28}, std::vector<uint8_t>(2 * 784, 9)));
  gz.resize(gz.size() / 2);
  testing::write_bytes(dir / "train-images-idx3-ubyte.gz", gz);
  REQUIRE_THROWS_WITH(load_dataset("fashion-mnist", dir.str(), 0), Contains("train-images-idx3-ubyte.gz") && Contains("gzip"));
  std::vector<uint8_t> bomb = testing::gzip(std::vector<uint8_t>(1 << 20, 0));
  REQUIRE_THROWS_WITH(gunzip_if_needed(bomb, "bomb.gz", 1000), Contains("bomb.gz") && Contains("more than 1000 bytes"));
}

TEST_CASE("image folders: an undecodable image, a wrong size, a missing class folder, bad class lists") {
  TempDir dir;
  std::string names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
  testing::write_text(dir / "label_names.txt", names);
  Image img = testing::pattern_image(32, 32, 3, 1);
  for (const char* split : {"train", "test"})
    for (const char* c : {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}) {
      std::string p = dir / (std::string(split) + "/" + c + "/0000.png");
      std::filesystem::create_directories(std::filesystem::path(p).parent_path());
      REQUIRE(stbi_write_png(p.c_str(), 32, 32, 3, img.pixels.data(), 96) != 0);
    }
  REQUIRE_NOTHROW(load_dataset("cifar10", dir.str(), 0));
  testing::write_text(dir / "train/cat/0001.jpg", "this is not a JPEG");
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("train/cat/0001.jpg") && Contains("cannot decode"));
  std::filesystem::remove(dir / "train/cat/0001.jpg");
  std::string small = dir / "test/dog/0001.png";
  REQUIRE(stbi_write_png(small.c_str(), 16, 16, 3, img.pixels.data(), 48) != 0);
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("test/dog/0001.png") && Contains("16x16"));
  std::filesystem::remove(small);
  std::filesystem::remove_all(dir / "test/frog");
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("test/frog") && Contains("missing"));
  testing::write_text(dir / "label_names.txt", "airplane\nautomobile\n");
  REQUIRE_THROWS_WITH(load_dataset("cifar10", dir.str(), 0), Contains("label_names.txt") && Contains("lists 2 classes"));
  REQUIRE_THROWS_WITH(scan_class_folders(dir / "nope", {}), Contains("nope") && Contains("missing"));
  std::vector<uint8_t> truncated_png;
  {
    int len = 0;
    unsigned char* png = stbi_write_png_to_mem(img.pixels.data(), 96, 32, 32, 3, &len);
    truncated_png.assign(png, png + len / 2);
    STBIW_FREE(png);
  }
  REQUIRE_THROWS_WITH(decode_image_bytes(truncated_png.data(), truncated_png.size(), 3, "half.png"), Contains("half.png"));
}

TEST_CASE("a worker's decode error reaches next() and names the file") {
  TempDir dir;
  testing::write_text(dir / "broken.jpg", "garbage");
  DatasetInfo info{"imagenet", 3, 0, 0, 2, {0.5f, 0.5f, 0.5f}, {0.2f, 0.2f, 0.2f}, {"a", "b"}};
  auto ds = std::make_shared<FileDataset>(info, std::vector<std::string>{dir / "broken.jpg"}, std::vector<int32_t>{1});
  AugmentConfig aug;
  aug.out_height = aug.out_width = 8;
  aug.resize = 8;
  aug.center_crop = 8;
  DataLoader dl(ds, 1, false, false, aug, 0, Device::CPU, 2);
  dl.start_epoch(0);
  Batch b;
  REQUIRE_THROWS_WITH(dl.next(b), Contains("broken.jpg") && Contains("cannot decode"));
  REQUIRE_THROWS_WITH(FileDataset(info, {"x.jpg"}, {2}), Contains("x.jpg") && Contains("label 2"));
  REQUIRE_THROWS_WITH(DataLoader(ds, 0, false, false, aug, 0, Device::CPU), Contains("batch_size 0"));
}
