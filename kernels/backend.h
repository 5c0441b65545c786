// The CUDA backend as the engine sees it: one table of function pointers, a slot per entry point
// the engine calls, each typed as the launcher it holds, so the two cannot disagree. Each
// kernels/X.cu fills its own slots (register_X, at its end) and kernels/backend.cu calls them all;
// the engine's registry (engine/backend/registry.h) keeps the one table and hands every op its
// slot. A slot left null raises an error naming the op, never a silent no-op. Plain C++: the
// engine includes this in every build, and in a build without CUDA every slot stays null.
#pragma once
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/binary_act.h"
#include "kernels/binary_conv.h"
#include "kernels/bitpack.h"
#include "kernels/conv2d.h"
#include "kernels/copy_spans.h"
#include "kernels/cuda_graph.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/elementwise_bf16.h"
#include "kernels/loss.h"
#include "kernels/matmul.h"
#include "kernels/nhwc_bf16.h"
#include "kernels/pooling.h"
#include "kernels/quant_project.h"
#include "kernels/quant_update.h"
#include "kernels/rowwise.h"
#include "kernels/stem_conv.h"
#include "kernels/stem_conv_mma.h"
#include "kernels/w1a16_conv.h"

namespace mdq::kernels {

struct CudaBackend {
  // ---- memory and runtime (kernels/device_memory.cu): engine/device.cpp, engine/storage.cpp,
  // engine/tensor.cpp, engine/ops/loss.cpp, data/loader.cpp
  decltype(&kernels::probe_device) probe_device = nullptr;
  decltype(&kernels::device_synchronize) device_synchronize = nullptr;
  decltype(&kernels::current_device) current_device = nullptr;
  decltype(&kernels::set_current_device) set_current_device = nullptr;
  decltype(&kernels::device_allocate) device_allocate = nullptr;
  decltype(&kernels::device_release) device_release = nullptr;
  decltype(&kernels::allocator_stats) allocator_stats = nullptr;
  decltype(&kernels::allocator_release_cache) allocator_release_cache = nullptr;
  decltype(&kernels::allocator_reset_peak) allocator_reset_peak = nullptr;
  decltype(&kernels::copy) copy = nullptr;
  decltype(&kernels::copy_async) copy_async = nullptr;
  decltype(&kernels::zero) zero = nullptr;
  decltype(&kernels::pinned_allocate) pinned_allocate = nullptr;
  decltype(&kernels::pinned_release) pinned_release = nullptr;
  decltype(&kernels::event_create) event_create = nullptr;
  decltype(&kernels::event_record) event_record = nullptr;
  decltype(&kernels::event_wait) event_wait = nullptr;
  decltype(&kernels::event_destroy) event_destroy = nullptr;
  decltype(&kernels::stream_create) stream_create = nullptr;
  decltype(&kernels::stream_destroy) stream_destroy = nullptr;
  decltype(&kernels::copy_async_on) copy_async_on = nullptr;
  decltype(&kernels::event_record_on) event_record_on = nullptr;
  decltype(&kernels::stream_wait_event) stream_wait_event = nullptr;

  // ---- cuda_graph.cu: engine/cuda_graph.cpp, engine/ops/loss.cpp (a capture defers its label check)
  decltype(&kernels::graph_capture_begin) graph_capture_begin = nullptr;
  decltype(&kernels::graph_capture_end) graph_capture_end = nullptr;
  decltype(&kernels::graph_capturing) graph_capturing = nullptr;
  decltype(&kernels::graph_replay) graph_replay = nullptr;
  decltype(&kernels::graph_destroy) graph_destroy = nullptr;
  decltype(&kernels::graph_step_args_count) graph_step_args_count = nullptr;
  decltype(&kernels::graph_set_step_args) graph_set_step_args = nullptr;

  // ---- copy_spans.cu: engine/ops/copy_spans.cpp (the data-parallel gradient buckets)
  decltype(&kernels::copy_spans) copy_spans = nullptr;

  // ---- elementwise.cu: engine/ops/elementwise.cpp, engine/tensor.cpp (fill_)
  decltype(&kernels::fill_f32) fill_f32 = nullptr;
  decltype(&kernels::binary_f32) binary_f32 = nullptr;
  decltype(&kernels::scale_f32) scale_f32 = nullptr;
  decltype(&kernels::axpy_f32) axpy_f32 = nullptr;
  decltype(&kernels::sum_f32) sum_f32 = nullptr;

  // ---- activation.cu: engine/ops/activation.cpp
  decltype(&kernels::activation_forward_f32) activation_forward_f32 = nullptr;
  decltype(&kernels::activation_backward_f32) activation_backward_f32 = nullptr;
  // ---- elementwise_bf16.cu: engine/ops/elementwise.cpp, engine/ops/activation.cpp (bf16 activations)
  decltype(&kernels::binary_bf16) binary_bf16 = nullptr;
  decltype(&kernels::activation_forward_bf16) activation_forward_bf16 = nullptr;
  decltype(&kernels::activation_backward_bf16) activation_backward_bf16 = nullptr;

  // ---- batchnorm.cu: engine/ops/batchnorm.cpp
  decltype(&kernels::batch_norm_forward_f32) batch_norm_forward_f32 = nullptr;
  decltype(&kernels::batch_norm_backward_f32) batch_norm_backward_f32 = nullptr;
  // ---- batchnorm_nhwc.cu: engine/ops/batchnorm.cpp (bf16 NHWC activations)
  decltype(&kernels::batch_norm_forward_nhwc_bf16) batch_norm_forward_nhwc_bf16 = nullptr;
  decltype(&kernels::batch_norm_backward_nhwc_bf16) batch_norm_backward_nhwc_bf16 = nullptr;

  // ---- pooling.cu: engine/ops/pooling.cpp
  decltype(&kernels::max_pool2d_forward_f32) max_pool2d_forward_f32 = nullptr;
  decltype(&kernels::max_pool2d_backward_f32) max_pool2d_backward_f32 = nullptr;
  decltype(&kernels::avg_pool2d_forward_f32) avg_pool2d_forward_f32 = nullptr;
  decltype(&kernels::avg_pool2d_backward_f32) avg_pool2d_backward_f32 = nullptr;
  decltype(&kernels::global_avg_pool_forward_f32) global_avg_pool_forward_f32 = nullptr;
  decltype(&kernels::global_avg_pool_backward_f32) global_avg_pool_backward_f32 = nullptr;

  // ---- loss.cu: engine/ops/loss.cpp
  decltype(&kernels::cross_entropy_forward_f32) cross_entropy_forward_f32 = nullptr;
  decltype(&kernels::cross_entropy_backward_f32) cross_entropy_backward_f32 = nullptr;
  decltype(&kernels::count_topk_correct_f32) count_topk_correct_f32 = nullptr;

  // ---- matmul.cu (cuBLAS), rowwise.cu: engine/ops/matmul.cpp
  decltype(&kernels::gemm_f32) gemm_f32 = nullptr;
  decltype(&kernels::add_row_vector_f32) add_row_vector_f32 = nullptr;
  decltype(&kernels::sum_rows_f32) sum_rows_f32 = nullptr;

  // ---- conv2d.cu (cuDNN): engine/ops/conv2d.cpp
  decltype(&kernels::conv2d_forward_f32) conv2d_forward_f32 = nullptr;
  decltype(&kernels::conv2d_backward_f32) conv2d_backward_f32 = nullptr;
  decltype(&kernels::conv2d_backward_bias_f32) conv2d_backward_bias_f32 = nullptr;
  decltype(&kernels::conv2d_forward_nhwc_bf16) conv2d_forward_nhwc_bf16 = nullptr;
  decltype(&kernels::conv2d_backward_nhwc_bf16) conv2d_backward_nhwc_bf16 = nullptr;
  decltype(&kernels::conv2d_filter_elems_nhwc_bf16) conv2d_filter_elems_nhwc_bf16 = nullptr;
  decltype(&kernels::conv2d_filter_nhwc_bf16) conv2d_filter_nhwc_bf16 = nullptr;
  decltype(&kernels::cudnn_conv2d_choices) cudnn_conv2d_choices = nullptr;

  // ---- quant_project.cu, quant_update.cu: engine/quant/projection.cpp, engine/quant/update.cpp
  decltype(&kernels::quant_primal) quant_primal = nullptr;
  decltype(&kernels::tanh_project_backward) tanh_project_backward = nullptr;
  decltype(&kernels::softmax_project_backward) softmax_project_backward = nullptr;
  decltype(&kernels::quant_round) quant_round = nullptr;
  decltype(&kernels::quant_step) quant_step = nullptr;
  decltype(&kernels::quant_step_multi) quant_step_multi = nullptr;

  // ---- bitpack.cu: engine/packed/bitpack.cpp, engine/packed/binary_conv.cpp (row_popc)
  decltype(&kernels::f32_to_bf16) f32_to_bf16 = nullptr;
  decltype(&kernels::bf16_to_f32) bf16_to_f32 = nullptr;
  decltype(&kernels::pack_signs_pc_f32) pack_signs_pc_f32 = nullptr;
  decltype(&kernels::pack_signs_pc_bf16) pack_signs_pc_bf16 = nullptr;
  decltype(&kernels::pack_signs_ncs_f32) pack_signs_ncs_f32 = nullptr;
  decltype(&kernels::pack_ternary_pc_f32) pack_ternary_pc_f32 = nullptr;
  decltype(&kernels::unpack_signs_pc_f32) unpack_signs_pc_f32 = nullptr;
  decltype(&kernels::row_popc) row_popc = nullptr;

  // ---- binary_conv.cu (W1A1), w1a16_conv.cu (W1A16/W2A16), binary_act.cu: engine/packed/
  decltype(&kernels::binary_conv2d) binary_conv2d = nullptr;
  decltype(&kernels::binary_conv_reads_pixel_popc) binary_conv_reads_pixel_popc = nullptr;
  decltype(&kernels::binary_conv_fuses_shortcut) binary_conv_fuses_shortcut = nullptr;
  decltype(&kernels::w1a16_conv2d) w1a16_conv2d = nullptr;
  decltype(&kernels::maxpool_bits_nhwc) maxpool_bits_nhwc = nullptr;
  decltype(&kernels::global_avg_pool_bits) global_avg_pool_bits = nullptr;
  decltype(&kernels::unpack_signs_ncs_f32) unpack_signs_ncs_f32 = nullptr;

  // ---- nhwc_bf16.cu: engine/packed/nhwc.cpp (the packed inference passes around the convolutions)
  decltype(&kernels::affine_act_nhwc<float>) affine_act_nhwc_f32 = nullptr;
  decltype(&kernels::affine_act_nhwc<uint16_t>) affine_act_nhwc_bf16 = nullptr;
  decltype(&kernels::maxpool_nhwc<float>) maxpool_nhwc_f32 = nullptr;
  decltype(&kernels::maxpool_nhwc<uint16_t>) maxpool_nhwc_bf16 = nullptr;
  decltype(&kernels::avgpool_nhwc<float, float>) avgpool_nhwc_f32 = nullptr;
  decltype(&kernels::avgpool_nhwc<uint16_t, uint16_t>) avgpool_nhwc_bf16 = nullptr;
  decltype(&kernels::nchw_f32_to_nhwc<float>) nchw_f32_to_nhwc_f32 = nullptr;
  decltype(&kernels::nchw_f32_to_nhwc<uint16_t>) nchw_f32_to_nhwc_bf16 = nullptr;
  decltype(&kernels::nchw_f32_to_nhwc_bf16_padded) nchw_f32_to_nhwc_bf16_padded = nullptr;
  decltype(&kernels::nhwc_to_nchw<float>) nhwc_to_nchw_f32 = nullptr;
  decltype(&kernels::nhwc_to_nchw<uint16_t>) nhwc_to_nchw_bf16 = nullptr;
  decltype(&kernels::nhwc_bf16_to_nchw_f32) nhwc_bf16_to_nchw_f32 = nullptr;
  decltype(&kernels::split_bf16_nhwc) split_bf16_nhwc = nullptr;

  // ---- stem_conv.cu: engine/packed/stem_conv.cpp (the direct stem of packed inference)
  decltype(&kernels::stem_conv_nhwc_bf16) stem_conv_nhwc_bf16 = nullptr;
  decltype(&kernels::stem_conv_nhwc_f32) stem_conv_nhwc_f32 = nullptr;
  decltype(&kernels::stem_conv_signs) stem_conv_signs = nullptr;
  // ---- stem_conv_mma.cu: engine/packed/stem_conv.cpp (the same stem on tensor cores, bf16 or split-bf16 operands)
  decltype(&kernels::stem_conv_mma_supported) stem_conv_mma_supported = nullptr;
  decltype(&kernels::stem_conv_mma_nhwc_bf16) stem_conv_mma_nhwc_bf16 = nullptr;
  decltype(&kernels::stem_conv_mma_nhwc_f32) stem_conv_mma_nhwc_f32 = nullptr;
  decltype(&kernels::stem_conv_mma_signs) stem_conv_mma_signs = nullptr;
};

// Fills every slot this build implements (kernels/backend.cu; CUDA builds only).
void register_cuda_backend(CudaBackend& b);

}  // namespace mdq::kernels
