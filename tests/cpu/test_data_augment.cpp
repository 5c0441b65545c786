// Augmentation properties: flip twice is the identity, crops stay in bounds, normalisation
// inverts, the pipeline is deterministic per seed and matches the primitives it fuses.
#include <set>

#include "data/augment.h"
#include "tests/cpu/test_data_support.h"

using namespace mdq;
using namespace mdq::data;

namespace {

DatasetInfo cifar_like() { return DatasetInfo{"cifar10", 3, 32, 32, 10, {0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f}, {}}; }

Image run(const Augmenter& a, const Image& img, uint64_t seed, const DatasetInfo& info, bool normalize = true) {
  std::vector<float> out(a.out_floats());
  a.apply(img.pixels.data(), img.height, img.width, seed, out.data());
  return from_chw(out.data(), a.channels(), a.out_height(), a.out_width(), info.mean, info.std, normalize);
}

}  // namespace

TEST_CASE("flip twice is the identity; flip mirrors columns") {
  for (int c : {1, 3}) {
    Image img = testing::pattern_image(5, 7, c, 3);
    Image f = hflip(img);
    REQUIRE(hflip(f).pixels == img.pixels);
    for (int k = 0; k < c; ++k) REQUIRE(f.at(2, 0)[k] == img.at(2, 6)[k]);
  }
}

TEST_CASE("normalisation inverts, and the pipeline with no augmentation equals to_chw") {
  DatasetInfo info = cifar_like();
  Image img = testing::pattern_image(32, 32, 3, 9);
  std::vector<float> chw(3 * 32 * 32), fused(3 * 32 * 32);
  for (bool normalize : {true, false}) {
    to_chw(img, info.mean, info.std, normalize, chw.data());
    REQUIRE(from_chw(chw.data(), 3, 32, 32, info.mean, info.std, normalize).pixels == img.pixels);
    AugmentConfig none;
    none.normalize = normalize;
    Augmenter a(none, info);
    a.apply(img.pixels.data(), 32, 32, 123, fused.data());
    REQUIRE(fused == chw);
  }
  // Normalised data of a whole pattern has the expected value at one spot.
  to_chw(img, info.mean, info.std, true, chw.data());
  REQUIRE(chw[1 * 1024 + 5 * 32 + 7] == Approx((img.at(5, 7)[1] / 255.f - 0.48f) / 0.24f));
}

TEST_CASE("random crop with padding stays in bounds and equals pad_crop (+flip) of some offset") {
  DatasetInfo info = cifar_like();
  AugmentConfig cfg = train_augment_for("cifar10");
  Augmenter a(cfg, info);
  REQUIRE(a.out_height() == 32);
  Image img = testing::pattern_image(32, 32, 3, 1);
  std::set<std::pair<int, int>> offsets;
  int flips = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Image out = run(a, img, seed, info);
    bool found = false;
    for (int top = 0; top <= 8 && !found; ++top)
      for (int left = 0; left <= 8 && !found; ++left) {
        Image c = pad_crop(img, 4, top, left, 32, 32);
        if (c.pixels == out.pixels) found = true, offsets.insert({top, left});
        else if (hflip(c).pixels == out.pixels) found = true, offsets.insert({top, left}), ++flips;
      }
    REQUIRE(found);
    REQUIRE(run(a, img, seed, info).pixels == out.pixels);  // deterministic per seed
  }
  REQUIRE(offsets.size() > 40);  // the 81 offsets are all reachable, and many are seen
  REQUIRE(flips > 100);
  REQUIRE(flips < 200);
}

TEST_CASE("random-resized crop boxes stay inside the image with torchvision's scale and ratio") {
  for (auto [h, w] : std::vector<std::pair<int, int>>{{32, 32}, {10, 300}, {375, 500}, {1, 1}, {2, 7}}) {
    Rng rng(h * 1000 + w);
    for (int t = 0; t < 500; ++t) {
      CropBox b = sample_resized_crop(h, w, rng);
      REQUIRE(b.top >= 0);
      REQUIRE(b.left >= 0);
      REQUIRE(b.height >= 1);
      REQUIRE(b.width >= 1);
      REQUIRE(b.top + b.height <= h);
      REQUIRE(b.left + b.width <= w);
    }
  }
  Rng rng(5);
  for (int t = 0; t < 200; ++t) {
    CropBox b = sample_resized_crop(400, 400, rng);
    double scale = double(b.height) * b.width / (400.0 * 400.0), ratio = double(b.width) / b.height;
    REQUIRE(scale >= 0.075);
    REQUIRE(scale <= 1.0);
    REQUIRE(ratio >= 0.74);
    REQUIRE(ratio <= 1.36);
  }
  DatasetInfo info{"imagenet", 3, 0, 0, 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, {}};
  Augmenter a(train_augment_for("imagenet"), info);
  REQUIRE(a.out_height() == 224);
  std::vector<float> out(a.out_floats());
  Image img = testing::pattern_image(50, 80, 3, 2);
  a.apply(img.pixels.data(), 50, 80, 7, out.data());
  for (float v : out) REQUIRE(std::isfinite(v));
}

TEST_CASE("resize and centre crop: constants stay constant, same size is the identity, eval recipe is 224") {
  Image img = testing::pattern_image(9, 13, 3, 4);
  REQUIRE(resize_bilinear(img, 9, 13).pixels == img.pixels);
  Image flat{6, 10, 1, std::vector<uint8_t>(60, 77)};
  Image r = resize_bilinear(flat, 17, 3);
  for (uint8_t v : r.pixels) REQUIRE(v == 77);
  Image s = resize_shorter(img, 18);
  REQUIRE(s.height == 18);
  REQUIRE(s.width == 26);
  Image c = center_crop(img, 5, 7);
  REQUIRE(c.at(0, 0)[1] == img.at(2, 3)[1]);
  REQUIRE(c.at(4, 6)[2] == img.at(6, 9)[2]);
  DatasetInfo info{"imagenet", 3, 0, 0, 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, {}};
  Augmenter e(eval_augment_for("imagenet"), info);
  REQUIRE(e.out_height() == 224);
  REQUIRE(e.out_width() == 224);
  Image big = testing::pattern_image(300, 400, 3, 8);
  Image out = run(e, big, 0, info);
  Image want = center_crop(resize_shorter(big, 256), 224, 224);
  REQUIRE(out.pixels == want.pixels);
}

TEST_CASE("bad augmentation settings are errors") {
  DatasetInfo info{"imagenet", 3, 0, 0, 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, {}};
  REQUIRE_THROWS_WITH(Augmenter(AugmentConfig{}, info), Catch::Contains("no fixed image size"));
  Image img = testing::pattern_image(4, 4, 3, 0);
  REQUIRE_THROWS_WITH(crop(img, {2, 2, 3, 3}), Catch::Contains("outside a 4x4 image"));
  REQUIRE_THROWS_WITH(train_augment_for("nope"), Catch::Contains("nope"));
  DatasetInfo small = cifar_like();
  AugmentConfig cfg;
  cfg.out_height = cfg.out_width = 40;
  Augmenter a(cfg, small);
  std::vector<float> out(a.out_floats());
  Image in = testing::pattern_image(32, 32, 3, 0);
  REQUIRE_THROWS_WITH(a.apply(in.pixels.data(), 32, 32, 0, out.data()), Catch::Contains("32x32"));
}
