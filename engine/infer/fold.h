// The epilogue parameters of a packed layer, from the eval-mode BatchNorm that follows it:
// folded into one affine map (W1A16 layers, the end of a W1A1 residual block) or turned into
// integer sign thresholds (W1A1 layers that write the next layer's bits).
#pragma once
#include <cstdint>

#include "engine/nn/batchnorm.h"
#include "engine/packed/packed_conv.h"

namespace mdq::infer {

// Eval-mode BatchNorm after a layer with bias b, as one affine map of the layer's raw output d:
// BN(d + b) = scale d + shift, scale = gamma invstd, shift = (b - mean) gamma invstd + beta,
// invstd = 1 / sqrt(running_var + eps) (engine/ops/batchnorm.cpp's eval formula; gamma = 1,
// beta = 0 without affine parameters). bias may be undefined (0); bn may be null (scale
// undefined = 1, shift b). Computed in double on the host; returns f32 [O] CPU tensors.
struct FoldedAffine {
  Tensor scale, shift;
};
FoldedAffine fold_batchnorm(const Tensor& bias, nn::BatchNorm2d* bn, int64_t out_channels);

// Integer thresholds i32 [2][O] (dmin, then flip; the layout of packed::sign_thresholds) on
// `device` such that (d >= dmin) xor flip equals the float engine's sign(BN(d + bias)) >= 0 on
// `device` for every |d| <= KH·KW·C of w: found by running ops::batch_norm_forward (eval) on
// every such d. bias may be undefined (0), bn null (no BN: the sign of d + bias).
Tensor sign_thresholds_of(const packed::PackedWeights& w, const Tensor& bias, nn::BatchNorm2d* bn, Device device);

}  // namespace mdq::infer
