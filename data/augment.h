// Augmentation: random crop with padding, horizontal flip, random-resized crop, resize, centre
// crop and per-channel normalisation, from uint8 HWC images to f32 CHW. Every random draw of a
// sample comes from one seed (sample_seed(seed, epoch, index)), so the result never depends on
// which thread did the work.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/random.h"

namespace mdq::data {

// Applied in this order: resize (shorter side to `resize`), then random_resized_crop (to
// out_height x out_width) or center_crop (square), then random_crop (pad crop_padding zeros each
// side, take a random out_height x out_width window), then hflip (p = 0.5), then
// normalize ((x/255 - mean) / std per channel; x/255 alone when false).
// out_height/out_width 0: centre crop size if set, else the dataset's image size.
struct AugmentConfig {
  bool random_crop = false;
  int crop_padding = 4;
  bool hflip = false;
  bool random_resized_crop = false;
  int resize = 0;
  int center_crop = 0;
  int out_height = 0, out_width = 0;
  bool normalize = true;
};

// The standard recipes (a column of data/dataset_table.cpp's table).
//   cifar10, cifar100, tinyimagenet  train: random crop (pad 4) + flip;   eval: none
//   mnist, fashion-mnist             train: none (the MD paper's setting); eval: none
//   imagenet                         train: random-resized crop 224 + flip; eval: resize 256, centre crop 224
//   folder                           train: flip;                           eval: none
// All normalise with the dataset's mean/std.
AugmentConfig train_augment_for(const std::string& dataset);
AugmentConfig eval_augment_for(const std::string& dataset);

// The seed of sample `index`'s random draws in `epoch`.
inline uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return splitmix64(splitmix64(seed ^ 0x6175676d656e74ull) + splitmix64(static_cast<uint64_t>(epoch)) * 31 +
                    static_cast<uint64_t>(index));
}

// ---- primitives (uint8 HWC in and out), exposed for tests and tools
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};
Image hflip(const Image& img);
Image crop(const Image& img, const CropBox& box);  // box must lie inside img
// A height x width window whose top-left is (top, left) in the image padded by pad zeros.
Image pad_crop(const Image& img, int pad, int top, int left, int height, int width);
Image resize_bilinear(const Image& img, int height, int width);  // half-pixel centres, no antialias
Image resize_shorter(const Image& img, int size);                // aspect kept
Image center_crop(const Image& img, int height, int width);
// torchvision's RandomResizedCrop box: area scale [0.08, 1], aspect [3/4, 4/3], 10 tries,
// then a centre crop of clamped aspect.
CropBox sample_resized_crop(int height, int width, Rng& rng);
// uint8 HWC -> f32 CHW, (x/255 - mean)/std (or x/255), and back (rounded, clamped).
void to_chw(const Image& img, const std::vector<float>& mean, const std::vector<float>& std, bool normalize, float* out);
Image from_chw(const float* chw, int channels, int height, int width, const std::vector<float>& mean,
               const std::vector<float>& std, bool normalize);

// One configured pipeline; apply() is const and thread-safe.
class Augmenter {
 public:
  Augmenter(const AugmentConfig& config, const DatasetInfo& info);
  int channels() const { return channels_; }
  int out_height() const { return out_h_; }
  int out_width() const { return out_w_; }
  size_t out_floats() const { return static_cast<size_t>(channels_) * out_h_ * out_w_; }
  // Writes out_floats() values (CHW) for the HWC image (height x width x channels()).
  void apply(const uint8_t* hwc, int height, int width, uint64_t sample_seed, float* out_chw) const;

 private:
  AugmentConfig cfg_;
  std::string name_;
  int channels_, out_h_, out_w_;
  std::vector<float> lut_;  // [channel][256]: the normalised value of each byte
};

}  // namespace mdq::data
