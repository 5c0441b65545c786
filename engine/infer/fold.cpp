// Epilogue parameters from BatchNorm (engine/infer/fold.h).
#include "engine/infer/fold.h"

#include <cmath>
#include <vector>

#include "engine/ops/batchnorm.h"

namespace mdq::infer {

FoldedAffine fold_batchnorm(const Tensor& bias, nn::BatchNorm2d* bn, int64_t out_channels) {
  const int64_t O = out_channels;
  if (bias.defined())
    MDQ_CHECK(bias.numel() == O, "fold_batchnorm: bias " << bias.describe() << " needs " << O << " values");
  FoldedAffine f;
  if (!bn) {
    if (bias.defined()) f.shift = bias.cpu().reshape({O});
    return f;
  }
  MDQ_CHECK(bn->channels() == O, "fold_batchnorm: BatchNorm2d(" << bn->channels() << ") after a layer with " << O
                                                                << " outputs");
  const std::vector<float> b = bias.defined() ? bias.to_vector() : std::vector<float>(static_cast<size_t>(O), 0.f);
  const std::vector<float> mean = bn->running_mean().to_vector(), var = bn->running_var().to_vector();
  std::vector<float> gamma(static_cast<size_t>(O), 1.f), beta(static_cast<size_t>(O), 0.f);
  if (bn->affine()) {
    gamma = bn->weight().value().to_vector();
    beta = bn->bias().value().to_vector();
  }
  std::vector<float> scale(static_cast<size_t>(O)), shift(static_cast<size_t>(O));
  for (size_t c = 0; c < static_cast<size_t>(O); ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + bn->eps());
    const double sc = invstd * gamma[c];
    scale[c] = static_cast<float>(sc);
    shift[c] = static_cast<float>((static_cast<double>(b[c]) - mean[c]) * sc + beta[c]);
  }
  f.scale = Tensor::from_vector(scale, {O});
  f.shift = Tensor::from_vector(shift, {O});
  return f;
}

Tensor sign_thresholds_of(const packed::PackedWeights& w, const Tensor& bias, nn::BatchNorm2d* bn, Device device) {
  const int64_t O = w.out_channels(), range = w.kernel_h() * w.kernel_w() * w.channels, R = 2 * range + 1;
  MDQ_CHECK(!bias.defined() || bias.numel() == O, "sign_thresholds_of: bias " << bias.describe() << " needs " << O
                                                                               << " values");
  MDQ_CHECK(O * R < (int64_t{1} << 31), "sign_thresholds_of: " << O << " channels x " << R << " values too many");
  const std::vector<float> b = bias.defined() ? bias.to_vector() : std::vector<float>(static_cast<size_t>(O), 0.f);
  // Every possible layer output d + bias (the float engine's conv: d exact, + bias rounded once)
  // as an NCHW [1][O][R][1] tensor, channel o's candidates along H, through the float engine's BN.
  std::vector<float> cand(static_cast<size_t>(O * R));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t j = 0; j < R; ++j) cand[static_cast<size_t>(o * R + j)] = static_cast<float>(j - range) + b[o];
  Tensor v = Tensor::from_vector(cand, {1, O, R, 1});
  if (bn) {
    MDQ_CHECK(bn->channels() == O, "sign_thresholds_of: BatchNorm2d(" << bn->channels() << ") after " << O
                                                                      << " outputs");
    Tensor mean = bn->running_mean().to(device), var = bn->running_var().to(device);
    const Tensor g = bn->affine() ? bn->weight().value().to(device) : Tensor();
    const Tensor beta = bn->affine() ? bn->bias().value().to(device) : Tensor();
    v = ops::batch_norm_forward(v.to(device), g, beta, mean, var, false, 0.1f, bn->eps()).out.cpu();
  }
  Tensor t = Tensor::empty({2, O}, DType::I32);
  int32_t* dmin = t.data<int32_t>();
  int32_t* flip = dmin + O;
  for (int64_t o = 0; o < O; ++o) {
    const float* p = v.data<float>() + o * R;
    auto bit = [&](int64_t j) { return p[j] >= 0.f; };  // SignSTE: +1 for y >= 0, sign(0) = +1
    const bool first = bit(0);
    int64_t j = 1;
    while (j < R && bit(j) == first) ++j;
    for (int64_t k = j; k < R; ++k)
      MDQ_CHECK(bit(k) != first, "sign_thresholds_of: BN output of channel " << o << " is not monotone in d at d = "
                                                                             << k - range);
    // Constant: (d >= -range) is always true, flip makes it the constant. Else the sign changes
    // at d = j - range: upward (false -> true) is d >= dmin, downward is its negation.
    dmin[o] = static_cast<int32_t>(j == R ? -range : j - range);
    flip[o] = j == R ? !first : first;
  }
  return t.to(device);
}

}  // namespace mdq::infer
