// Augmentation primitives and the fused per-sample pipeline. The common CIFAR case (random crop
// with padding + flip + normalise of a cached image) is one pass over the output through a
// 256-entry table per channel: no intermediate image, no division.
#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "data/dataset_table.h"
#include "common/error.h"

namespace mdq::data {

// The recipes are columns of the dataset table (data/dataset_table.cpp).
AugmentConfig train_augment_for(const std::string& dataset) {
  const DatasetEntry* e = find_dataset(dataset);
  MDQ_CHECK(e, "data: no augmentation recipe for dataset '" << dataset << "'");
  return e->train;
}

AugmentConfig eval_augment_for(const std::string& dataset) {
  const DatasetEntry* e = find_dataset(dataset);
  return e ? e->eval : AugmentConfig{};  // an unnamed dataset: no resizing or cropping, normalise only
}

// ---------------------------------------------------------------- primitives
Image hflip(const Image& img) {
  Image out = img;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      std::copy_n(img.at(y, img.width - 1 - x), img.channels, out.at(y, x));
  return out;
}

Image crop(const Image& img, const CropBox& b) {
  MDQ_CHECK(b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0 && b.top + b.height <= img.height &&
                b.left + b.width <= img.width,
            "augment: crop box (" << b.top << ", " << b.left << ", " << b.height << "x" << b.width << ") outside a "
                                  << img.height << "x" << img.width << " image");
  Image out{b.height, b.width, img.channels, std::vector<uint8_t>(static_cast<size_t>(b.height) * b.width * img.channels)};
  for (int y = 0; y < b.height; ++y) std::copy_n(img.at(b.top + y, b.left), static_cast<size_t>(b.width) * img.channels, out.at(y, 0));
  return out;
}

Image pad_crop(const Image& img, int pad, int top, int left, int height, int width) {
  MDQ_CHECK(top >= 0 && left >= 0 && top + height <= img.height + 2 * pad && left + width <= img.width + 2 * pad,
            "augment: pad_crop window (" << top << ", " << left << ", " << height << "x" << width << ") outside a "
                                         << img.height << "x" << img.width << " image padded by " << pad);
  Image out{height, width, img.channels, std::vector<uint8_t>(static_cast<size_t>(height) * width * img.channels, 0)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      int sy = y + top - pad, sx = x + left - pad;
      if (sy >= 0 && sy < img.height && sx >= 0 && sx < img.width) std::copy_n(img.at(sy, sx), img.channels, out.at(y, x));
    }
  return out;
}

Image resize_bilinear(const Image& img, int height, int width) {
  MDQ_CHECK(height > 0 && width > 0 && img.height > 0 && img.width > 0,
            "augment: resize " << img.height << "x" << img.width << " to " << height << "x" << width);
  Image out{height, width, img.channels, std::vector<uint8_t>(static_cast<size_t>(height) * width * img.channels)};
  const float sy = static_cast<float>(img.height) / height, sx = static_cast<float>(img.width) / width;
  for (int y = 0; y < height; ++y) {
    float fy = std::clamp((y + 0.5f) * sy - 0.5f, 0.f, static_cast<float>(img.height - 1));
    int y0 = static_cast<int>(fy), y1 = std::min(y0 + 1, img.height - 1);
    float wy = fy - y0;
    for (int x = 0; x < width; ++x) {
      float fx = std::clamp((x + 0.5f) * sx - 0.5f, 0.f, static_cast<float>(img.width - 1));
      int x0 = static_cast<int>(fx), x1 = std::min(x0 + 1, img.width - 1);
      float wx = fx - x0;
      for (int c = 0; c < img.channels; ++c) {
        float top = img.at(y0, x0)[c] * (1 - wx) + img.at(y0, x1)[c] * wx;
        float bot = img.at(y1, x0)[c] * (1 - wx) + img.at(y1, x1)[c] * wx;
        out.at(y, x)[c] = static_cast<uint8_t>(std::lround(std::clamp(top * (1 - wy) + bot * wy, 0.f, 255.f)));
      }
    }
  }
  return out;
}

Image resize_shorter(const Image& img, int size) {
  if (img.height <= img.width) {
    int w = static_cast<int>(std::lround(static_cast<double>(img.width) * size / img.height));
    return resize_bilinear(img, size, std::max(w, 1));
  }
  int h = static_cast<int>(std::lround(static_cast<double>(img.height) * size / img.width));
  return resize_bilinear(img, std::max(h, 1), size);
}

Image center_crop(const Image& img, int height, int width) {
  MDQ_CHECK(height <= img.height && width <= img.width,
            "augment: centre crop " << height << "x" << width << " of a smaller " << img.height << "x" << img.width << " image");
  return crop(img, {(img.height - height) / 2, (img.width - width) / 2, height, width});
}

CropBox sample_resized_crop(int height, int width, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = area * (0.08 + (1.0 - 0.08) * rng.uniform());
    double ratio = std::exp(log_lo + (log_hi - log_lo) * rng.uniform());
    int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      int top = static_cast<int>(rng.below(static_cast<uint64_t>(height - h + 1)));
      int left = static_cast<int>(rng.below(static_cast<uint64_t>(width - w + 1)));
      return {top, left, h, w};
    }
  }
  double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < 3.0 / 4.0) h = std::min(height, static_cast<int>(std::lround(w / (3.0 / 4.0))));
  else if (in_ratio > 4.0 / 3.0) w = std::min(width, static_cast<int>(std::lround(h * (4.0 / 3.0))));
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void to_chw(const Image& img, const std::vector<float>& mean, const std::vector<float>& std, bool normalize, float* out) {
  const size_t plane = static_cast<size_t>(img.height) * img.width;
  for (int c = 0; c < img.channels; ++c) {
    float m = normalize ? mean.at(c) : 0.f, s = normalize ? std.at(c) : 1.f;
    for (size_t p = 0; p < plane; ++p) out[c * plane + p] = (img.pixels[p * img.channels + c] / 255.f - m) / s;
  }
}

Image from_chw(const float* chw, int channels, int height, int width, const std::vector<float>& mean,
               const std::vector<float>& std, bool normalize) {
  Image img{height, width, channels, std::vector<uint8_t>(static_cast<size_t>(height) * width * channels)};
  const size_t plane = static_cast<size_t>(height) * width;
  for (int c = 0; c < channels; ++c) {
    float m = normalize ? mean.at(c) : 0.f, s = normalize ? std.at(c) : 1.f;
    for (size_t p = 0; p < plane; ++p)
      img.pixels[p * channels + c] = static_cast<uint8_t>(std::lround(std::clamp((chw[c * plane + p] * s + m) * 255.f, 0.f, 255.f)));
  }
  return img;
}

// ---------------------------------------------------------------- the pipeline
Augmenter::Augmenter(const AugmentConfig& config, const DatasetInfo& info)
    : cfg_(config), name_(info.name), channels_(info.channels) {
  MDQ_CHECK(channels_ >= 1, "augment: dataset '" << info.name << "' has " << channels_ << " channels");
  if (cfg_.out_height > 0 && cfg_.out_width > 0) {
    out_h_ = cfg_.out_height;
    out_w_ = cfg_.out_width;
  } else if (cfg_.center_crop > 0) {
    out_h_ = out_w_ = cfg_.center_crop;
  } else {
    MDQ_CHECK(info.height > 0 && info.width > 0 && cfg_.resize == 0,
              "augment: dataset '" << info.name << "' has no fixed image size (or resize is set): set out_height/out_width "
                                   << "or center_crop so every sample has one output size");
    out_h_ = info.height;
    out_w_ = info.width;
  }
  MDQ_CHECK(cfg_.crop_padding >= 0, "augment: crop_padding " << cfg_.crop_padding << " < 0");
  if (cfg_.normalize)
    MDQ_CHECK(info.mean.size() == static_cast<size_t>(channels_) && info.std.size() == static_cast<size_t>(channels_),
              "augment: dataset '" << info.name << "' has " << info.mean.size() << " means and " << info.std.size()
                                   << " stds for " << channels_ << " channels");
  lut_.resize(static_cast<size_t>(channels_) * 256);
  for (int c = 0; c < channels_; ++c) {
    float m = cfg_.normalize ? info.mean[c] : 0.f, s = cfg_.normalize ? info.std[c] : 1.f;
    for (int v = 0; v < 256; ++v) lut_[c * 256 + v] = (v / 255.f - m) / s;  // the same expression as to_chw
  }
}

void Augmenter::apply(const uint8_t* hwc, int height, int width, uint64_t seed, float* out) const {
  Rng rng(seed);
  Image tmp;
  const uint8_t* src = hwc;
  int h = height, w = width;
  const int C = channels_;
  bool geometric = cfg_.resize > 0 || cfg_.random_resized_crop || cfg_.center_crop > 0;
  if (geometric) {
    tmp = Image{h, w, C, std::vector<uint8_t>(hwc, hwc + static_cast<size_t>(h) * w * C)};
    if (cfg_.resize > 0) tmp = resize_shorter(tmp, cfg_.resize);
    if (cfg_.random_resized_crop) tmp = resize_bilinear(crop(tmp, sample_resized_crop(tmp.height, tmp.width, rng)), out_h_, out_w_);
    else if (cfg_.center_crop > 0) tmp = center_crop(tmp, cfg_.center_crop, cfg_.center_crop);
    src = tmp.pixels.data();
    h = tmp.height;
    w = tmp.width;
  }
  int pad = 0, top = 0, left = 0;
  if (cfg_.random_crop) {
    pad = cfg_.crop_padding;
    MDQ_CHECK(h + 2 * pad >= out_h_ && w + 2 * pad >= out_w_, "augment: " << name_ << ": random crop " << out_h_ << "x" << out_w_
                                                                     << " of a " << h << "x" << w << " image padded by " << pad);
    top = static_cast<int>(rng.below(static_cast<uint64_t>(h + 2 * pad - out_h_ + 1)));
    left = static_cast<int>(rng.below(static_cast<uint64_t>(w + 2 * pad - out_w_ + 1)));
  } else {
    MDQ_CHECK(h == out_h_ && w == out_w_, "augment: " << name_ << ": a " << h << "x" << w << " image reaches the end of the pipeline "
                                                      << "but the output is " << out_h_ << "x" << out_w_
                                                      << " (add resize/center_crop/random_crop)");
  }
  const bool flip = cfg_.hflip && rng.uniform() < 0.5f;
  const size_t plane = static_cast<size_t>(out_h_) * out_w_;
  for (int c = 0; c < C; ++c) {
    const float* lut = lut_.data() + c * 256;
    float* dst = out + c * plane;
    for (int y = 0; y < out_h_; ++y) {
      int sy = y + top - pad;
      float* row = dst + static_cast<size_t>(y) * out_w_;
      if (sy < 0 || sy >= h) {
        std::fill_n(row, out_w_, lut[0]);
        continue;
      }
      const uint8_t* srow = src + static_cast<size_t>(sy) * w * C + c;
      for (int x = 0; x < out_w_; ++x) {
        int sx = (flip ? out_w_ - 1 - x : x) + left - pad;
        row[x] = (sx >= 0 && sx < w) ? lut[srow[static_cast<size_t>(sx) * C]] : lut[0];
      }
    }
  }
}

}  // namespace mdq::data
