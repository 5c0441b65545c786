// Each dataset format, written by the test in its exact on-disk layout and read back through
// load_dataset: pixels and labels must come back exactly (PNG exactly, one JPEG loosely).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "tests/cpu/test_data_support.h"

using namespace mdq;
using namespace mdq::data;
using mdq::testing::TempDir;

namespace {

const std::vector<std::string> kCifar10Names{"airplane", "automobile", "bird", "cat", "deer",
                                             "dog", "frog", "horse", "ship", "truck"};

// A CIFAR record: label byte(s), then the R, G and B planes. Pixel (p, c) of record r is a
// known function so the HWC result can be checked exactly.
uint8_t cifar_pixel(int r, int p, int c) { return static_cast<uint8_t>((r * 31 + p * 7 + c * 101) & 255); }

std::vector<uint8_t> cifar_file(int first, int count, bool c100) {
  std::vector<uint8_t> b;
  for (int r = first; r < first + count; ++r) {
    if (c100) b.push_back(static_cast<uint8_t>(r % 20));
    b.push_back(static_cast<uint8_t>(c100 ? r % 100 : r % 10));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) b.push_back(cifar_pixel(r, p, c));
  }
  return b;
}

void check_cifar_dataset(const Dataset& ds, int first, int classes) {
  Image img;
  for (int64_t i = 0; i < ds.size(); ++i) {
    int r = first + static_cast<int>(i);
    REQUIRE(ds.label(i) == r % classes);
    ds.image(i, img);
    REQUIRE(img.height == 32);
    REQUIRE(img.width == 32);
    REQUIRE(img.channels == 3);
    for (int p = 0; p < 1024; ++p)
      for (int c = 0; c < 3; ++c) REQUIRE(img.pixels[p * 3 + c] == cifar_pixel(r, p, c));
  }
}

void write_png(const std::string& path, const Image& img) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  REQUIRE(stbi_write_png(path.c_str(), img.width, img.height, img.channels, img.pixels.data(), img.width * img.channels) != 0);
}

}  // namespace

TEST_CASE("CIFAR-10 binary batches read back exactly, also from the parent folder") {
  TempDir dir;
  for (int b = 1; b <= 5; ++b)
    testing::write_bytes(dir / ("cifar10/data_batch_" + std::to_string(b) + ".bin"), cifar_file((b - 1) * 4, 4, false));
  testing::write_bytes(dir / "cifar10/test_batch.bin", cifar_file(100, 3, false));
  for (const std::string& root : {dir / "cifar10", dir.str()}) {
    Splits s = load_dataset("cifar10", root, 1, 0.0);
    REQUIRE(s.train->size() == 20);
    REQUIRE(s.test->size() == 3);
    REQUIRE(s.val == nullptr);
    REQUIRE(s.train->info().num_classes == 10);
    REQUIRE(s.train->info().class_names.size() == 10);
    check_cifar_dataset(*s.train, 0, 10);
    check_cifar_dataset(*s.test, 100, 10);
  }
}

TEST_CASE("CIFAR-100 binary keeps fine and coarse labels") {
  TempDir dir;
  testing::write_bytes(dir / "train.bin", cifar_file(0, 7, true));
  testing::write_bytes(dir / "test.bin", cifar_file(50, 2, true));
  Splits s = load_dataset("cifar100", dir.str(), 1, 0.0);
  REQUIRE(s.train->size() == 7);
  check_cifar_dataset(*s.train, 0, 100);
  check_cifar_dataset(*s.test, 50, 100);
  std::vector<uint8_t> bytes = cifar_file(0, 7, true);
  RawImages raw = parse_cifar(bytes.data(), bytes.size(), CifarKind::Cifar100, "train.bin");
  for (int r = 0; r < 7; ++r) REQUIRE(raw.coarse_labels[r] == r % 20);
}

TEST_CASE("idx files read back exactly, plain and gzip") {
  const int n_train = 12, n_test = 5;
  auto images = [](int n, int salt) {
    std::vector<uint8_t> px(static_cast<size_t>(n) * 28 * 28);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 13 + salt) & 255);
    return px;
  };
  auto labels = [](int n) {
    std::vector<uint8_t> l;
    for (int i = 0; i < n; ++i) l.push_back(static_cast<uint8_t>((i * 3) % 10));
    return l;
  };
  for (bool gz : {false, true}) {
    TempDir dir;
    auto put = [&](const std::string& stem, const std::vector<uint8_t>& bytes) {
      testing::write_bytes(dir / (stem + (gz ? ".gz" : "")), gz ? testing::gzip(bytes) : bytes);
    };
    put("train-images-idx3-ubyte", testing::idx_bytes({n_train, 28, 28}, images(n_train, 1)));
    put("train-labels-idx1-ubyte", testing::idx_bytes({n_train}, labels(n_train)));
    put("t10k-images-idx3-ubyte", testing::idx_bytes({n_test, 28, 28}, images(n_test, 2)));
    put("t10k-labels-idx1-ubyte", testing::idx_bytes({n_test}, labels(n_test)));
    for (const char* name : {"fashion-mnist", "mnist"}) {
      Splits s = load_dataset(name, dir.str(), 3, 0.0);
      REQUIRE(s.train->size() == n_train);
      REQUIRE(s.test->size() == n_test);
      std::vector<uint8_t> want = images(n_train, 1);
      for (int i = 0; i < n_train; ++i) {
        REQUIRE(s.train->label(i) == (i * 3) % 10);
        const uint8_t* p = s.train->cached(i);
        REQUIRE(std::equal(p, p + 784, want.begin() + i * 784));
      }
      REQUIRE(s.test->cached(4)[783] == images(n_test, 2)[4 * 784 + 783]);
    }
  }
}

TEST_CASE("the CIFAR-10 JPEG-copy layout reads PNGs exactly, in label_names.txt order") {
  TempDir dir;
  // label_names.txt in a non-alphabetical order: labels must follow the file, not the folder sort.
  std::vector<std::string> names = kCifar10Names;
  std::swap(names[0], names[9]);
  std::string list;
  for (const auto& n : names) list += n + "\n";
  testing::write_text(dir / "cifar10/label_names.txt", list);
  for (int c = 0; c < 10; ++c)
    for (int k = 0; k < 2; ++k) {
      write_png(dir / ("cifar10/train/" + names[c] + "/000" + std::to_string(k) + ".png"), testing::pattern_image(32, 32, 3, c * 10 + k));
      if (k == 0) write_png(dir / ("cifar10/test/" + names[c] + "/0000.png"), testing::pattern_image(32, 32, 3, 500 + c));
    }
  Splits s = load_dataset("cifar10", dir.str(), 7, 0.5);
  REQUIRE(s.train->size() == 10);
  REQUIRE(s.val->size() == 10);  // round(0.5 * 2) per class
  REQUIRE(s.test->size() == 10);
  REQUIRE(s.train->info().class_names == names);
  // Every training image is one of the 20 written, under its own label.
  for (const auto& part : {s.train, s.val})
    for (int64_t i = 0; i < part->size(); ++i) {
      int c = part->label(i);
      Image img;
      part->image(i, img);
      bool k0 = img.pixels == testing::pattern_image(32, 32, 3, c * 10).pixels;
      bool k1 = img.pixels == testing::pattern_image(32, 32, 3, c * 10 + 1).pixels;
      REQUIRE((k0 || k1));
    }
  for (int c = 0; c < 10; ++c) {
    REQUIRE(s.test->label(c) == c);
    REQUIRE(std::equal(s.test->cached(c), s.test->cached(c) + 3072, testing::pattern_image(32, 32, 3, 500 + c).pixels.begin()));
  }
  REQUIRE(s.balance_report.find("airplane") != std::string::npos);
}

TEST_CASE("a generic folder: sorted classes or classes.txt; one JPEG decodes close to its source") {
  TempDir dir;
  for (const char* cls : {"zebra", "ant", "moth"}) {
    write_png(dir / (std::string("train/") + cls + "/a.png"), testing::pattern_image(8, 12, 3, cls[0]));
    write_png(dir / (std::string("val/") + cls + "/b.png"), testing::pattern_image(8, 12, 3, cls[1]));
  }
  Splits s = load_dataset("folder", dir.str(), 0, 0.0);
  REQUIRE(s.train->info().class_names == std::vector<std::string>{"ant", "moth", "zebra"});
  REQUIRE(s.train->info().height == 8);
  REQUIRE(s.train->info().width == 12);
  REQUIRE(s.train->label(2) == 2);
  REQUIRE(std::equal(s.train->cached(2), s.train->cached(2) + 288, testing::pattern_image(8, 12, 3, 'z').pixels.begin()));
  testing::write_text(dir / "classes.txt", "moth\nzebra\nant\n");
  s = load_dataset("folder", dir.str(), 0, 0.0);
  REQUIRE(s.train->info().class_names == std::vector<std::string>{"moth", "zebra", "ant"});
  REQUIRE(std::equal(s.test->cached(1), s.test->cached(1) + 288, testing::pattern_image(8, 12, 3, 'e').pixels.begin()));

  // JPEG is lossy: a smooth image comes back within a few levels on average.
  Image smooth{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)};
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x)
      for (int c = 0; c < 3; ++c) smooth.at(y, x)[c] = static_cast<uint8_t>(60 + 8 * x + 4 * y + 20 * c);
  std::string jpg = dir / "smooth.jpg";
  REQUIRE(stbi_write_jpg(jpg.c_str(), 16, 16, 3, smooth.pixels.data(), 95) != 0);
  Image back = decode_image(jpg, 3);
  REQUIRE(back.height == 16);
  REQUIRE(back.width == 16);
  double err = 0;
  for (size_t i = 0; i < back.pixels.size(); ++i) err += std::abs(int(back.pixels[i]) - int(smooth.pixels[i]));
  REQUIRE(err / back.pixels.size() < 4.0);
}

TEST_CASE("the Tiny ImageNet layout: wnids.txt, train/<wnid>/images, val annotations") {
  TempDir dir;
  std::string wnids;
  for (int c = 0; c < 200; ++c) wnids += "n" + std::to_string(1000 + (c * 7) % 200) + "\n";  // not sorted
  testing::write_text(dir / "tiny-imagenet-200/wnids.txt", wnids);
  std::vector<std::string> names = read_lines(dir / "tiny-imagenet-200/wnids.txt");
  std::string ann;
  for (int c = 0; c < 200; ++c) {
    write_png(dir / ("tiny-imagenet-200/train/" + names[c] + "/images/" + names[c] + "_0.JPEG.png"), testing::pattern_image(64, 64, 3, c));
    testing::write_text(dir / ("tiny-imagenet-200/train/" + names[c] + "/" + names[c] + "_boxes.txt"), "ignored\n");
    if (c % 50 == 0) {
      std::string f = "val_" + std::to_string(c) + ".png";
      write_png(dir / ("tiny-imagenet-200/val/images/" + f), testing::pattern_image(64, 64, 3, 1000 + c));
      ann += f + "\t" + names[c] + "\t0\t0\t10\t10\n";
    }
  }
  testing::write_text(dir / "tiny-imagenet-200/val/val_annotations.txt", ann);
  Splits s = load_dataset("tinyimagenet", dir.str(), 0, 0.0);
  REQUIRE(s.train->size() == 200);
  REQUIRE(s.test->size() == 4);
  for (int c = 0; c < 200; c += 37) {
    REQUIRE(s.train->label(c) == c);
    REQUIRE(std::equal(s.train->cached(c), s.train->cached(c) + 64 * 64 * 3, testing::pattern_image(64, 64, 3, c).pixels.begin()));
  }
  REQUIRE(s.test->label(2) == 100);
  REQUIRE(std::equal(s.test->cached(2), s.test->cached(2) + 64 * 64 * 3, testing::pattern_image(64, 64, 3, 1100).pixels.begin()));
}

TEST_CASE("the ImageNet layout decodes per access and feeds the eval recipe") {
  TempDir dir;
  for (int c = 0; c < 1000; ++c) {
    char wnid[16];
    std::snprintf(wnid, sizeof(wnid), "n%08d", c);
    std::string w = wnid;
    std::filesystem::create_directories(dir / ("imagenet/train/" + w));
    std::filesystem::create_directories(dir / ("imagenet/val/" + w));
    if (c % 250 == 0) {
      write_png(dir / ("imagenet/train/" + w + "/x.png"), testing::pattern_image(20 + c / 250, 30, 3, c));
      write_png(dir / ("imagenet/val/" + w + "/y.png"), testing::pattern_image(30, 20, 3, c + 1));
    } else {  // most classes get a tiny file so the folder layout is complete
      write_png(dir / ("imagenet/train/" + w + "/x.png"), testing::pattern_image(4, 5, 3, c));
      write_png(dir / ("imagenet/val/" + w + "/y.png"), testing::pattern_image(5, 4, 3, c));
    }
  }
  Splits s = load_dataset("imagenet", dir.str(), 0, 0.0);
  REQUIRE(s.train->size() == 1000);
  REQUIRE(s.train->cached(0) == nullptr);
  Image img;
  s.train->image(250, img);
  REQUIRE(img.height == 21);
  REQUIRE(img.width == 30);
  REQUIRE(img.pixels == testing::pattern_image(21, 30, 3, 250).pixels);
  REQUIRE(s.test->label(500) == 500);
  DataLoader dl(s.test, 3, false, false, eval_augment_for("imagenet"), 0, Device::CPU, 2);
  dl.start_epoch(0);
  Batch b;
  REQUIRE(dl.next(b));
  REQUIRE(b.images.shape() == Shape{3, 3, 224, 224});
}
