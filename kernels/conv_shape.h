// The implicit-GEMM shape both packed convolutions start from (kernels/binary_conv.cu and
// w1a16_conv.cu): input N x H x W x C (C in Cw 32-bit words when packed), O filters of KH x KW
// taps, stride and zero padding, the output size, and K = T taps x Cw words per filter.
#pragma once
#include "common/window.h"

namespace mdq::kernels {

struct ConvShape {
  int N, H, W, C, Cw, O, KH, KW, stride, pad, OH, OW, T, Ktot;
};

// From a kernel's argument struct (BinaryConvArgs, W1A16ConvArgs: the same field names).
template <class Args>
ConvShape conv_shape(const Args& a) {
  ConvShape s{};
  s.N = a.N; s.H = a.H; s.W = a.W; s.C = a.C; s.Cw = (a.C + 31) / 32; s.O = a.O;
  s.KH = a.KH; s.KW = a.KW; s.stride = a.stride; s.pad = a.pad;
  s.OH = ops::window_output_size(a.H, a.KH, a.stride, a.pad);
  s.OW = ops::window_output_size(a.W, a.KW, a.stride, a.pad);
  s.T = a.KH * a.KW;
  s.Ktot = s.T * s.Cw;
  return s;
}

}  // namespace mdq::kernels
