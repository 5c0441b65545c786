// Batch norm, activations and pooling on the GPU against the CPU reference, on random inputs
// over a sweep of shapes (odd H/W, C = 1, 3, 64, N = 1 and 5). Tolerances, and why:
//   activations, pooling forward/backward: 1e-6 abs (kExact): the kernels do the same float
//     operations in the same order as the reference (select, max, window sums in row-major
//     order), so they should agree bit for bit; the slack only keeps the tolerance nonzero;
//   global average pooling: 1e-5 abs (warp-strided float sum vs a double sum);
//   batch norm outputs and grad_input: 1e-4 abs + 1e-4 rel (float block reductions vs double);
//   batch norm per-channel sums (dweight, dbias): 1e-3 abs + 1e-4 rel (sums of M terms of size 1);
//   mean, invstd, running stats: 1e-5 abs + 1e-5 rel.
// Failures name the op, the shape and the worst element (testing::require_close).
#include <algorithm>
#include <sstream>

#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/ops/activation.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/pooling.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

constexpr float kExact = 1e-6f;

const std::vector<Shape> kShapes = {{1, 1, 5, 5},   {5, 3, 7, 9}, {1, 64, 8, 8}, {5, 64, 3, 3},
                                    {5, 3, 32, 32}, {2, 1, 1, 1}, {5, 1, 11, 6}};

// The ops return fresh tensors, so we cannot poison an output directly. Instead, poison a
// block of the output's size and free it: the caching allocator hands that block to the next
// allocation of the same rounded size, so an element a kernel forgets to write stays NaN.
// Inputs are uploaded before calling this, so the op's output is that next allocation.
void poison_next(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  testing::poison(t);
}

std::string label(const char* op, const Shape& shape, const std::string& extra = "") {
  std::ostringstream s;
  s << op << " x " << shape_str(shape) << extra;
  return s.str();
}

}  // namespace

TEST_CASE("activations match the CPU reference exactly") {
  for (const Shape& shape : kShapes) {
    Tensor x = testing::random_tensor(shape, 100 + shape_numel(shape), -8.f, 8.f);
    Tensor s = testing::random_tensor(shape, 200 + shape_numel(shape), -2.f, 2.f);  // both sides of |x| = 1
    Tensor g = testing::random_tensor(shape, 300 + shape_numel(shape));
    Tensor gx = x.cuda(), gs = s.cuda(), gg = g.cuda();
    poison_next(shape);
    testing::require_close(ops::relu_forward(gx), ops::relu_forward(x), kExact, 0, label("relu", shape));
    poison_next(shape);
    testing::require_close(ops::relu_backward(gg, gx), ops::relu_backward(g, x), kExact, 0,
                           label("relu_backward", shape));
    poison_next(shape);
    testing::require_close(ops::relu6_forward(gx), ops::relu6_forward(x), kExact, 0, label("relu6", shape));
    poison_next(shape);
    testing::require_close(ops::relu6_backward(gg, gx), ops::relu6_backward(g, x), kExact, 0,
                           label("relu6_backward", shape));
    poison_next(shape);
    testing::require_close(ops::sign_forward(gs), ops::sign_forward(s), kExact, 0, label("sign", shape));
    poison_next(shape);
    testing::require_close(ops::sign_ste_backward(gg, gs), ops::sign_ste_backward(g, s), kExact, 0,
                           label("sign_ste_backward", shape));
  }
}

TEST_CASE("max and average pooling match the CPU reference, forward and backward") {
  struct Geometry {
    int64_t kernel, stride, padding;
  };
  for (const Shape& shape : kShapes)
    for (Geometry geo :
         {Geometry{2, 2, 0}, Geometry{3, 2, 1}, Geometry{3, 1, 1}, Geometry{2, 1, 0}, Geometry{1, 1, 0}}) {
      if (shape[2] + 2 * geo.padding < geo.kernel || shape[3] + 2 * geo.padding < geo.kernel) continue;
      std::ostringstream extra;
      extra << " kernel " << geo.kernel << " stride " << geo.stride << " padding " << geo.padding;
      Tensor x = testing::random_tensor(shape, 400 + shape_numel(shape) + geo.kernel * 10 + geo.stride);
      Tensor gx = x.cuda();
      ops::MaxPool2dResult cpu = ops::max_pool2d_forward(x, geo.kernel, geo.stride, geo.padding);
      poison_next(cpu.out.shape());
      ops::MaxPool2dResult gpu = ops::max_pool2d_forward(gx, geo.kernel, geo.stride, geo.padding);
      testing::require_close(gpu.out, cpu.out, kExact, 0, label("max_pool2d", shape, extra.str()));
      {
        INFO(label("max_pool2d argmax", shape, extra.str()));
        REQUIRE(gpu.argmax.to_vector_i32() == cpu.argmax.to_vector_i32());
      }
      Tensor g = testing::random_tensor(cpu.out.shape(), 500 + shape_numel(shape));
      Tensor gg = g.cuda();
      Tensor want = ops::max_pool2d_backward(g, cpu.argmax, shape, geo.kernel, geo.stride, geo.padding);
      poison_next(shape);
      Tensor got = ops::max_pool2d_backward(gg, gpu.argmax, shape, geo.kernel, geo.stride, geo.padding);
      testing::require_close(got, want, kExact, 0, label("max_pool2d_backward", shape, extra.str()));

      poison_next(cpu.out.shape());
      testing::require_close(ops::avg_pool2d_forward(gx, geo.kernel, geo.stride, geo.padding),
                             ops::avg_pool2d_forward(x, geo.kernel, geo.stride, geo.padding), kExact, 0,
                             label("avg_pool2d", shape, extra.str()));
      poison_next(shape);
      testing::require_close(ops::avg_pool2d_backward(gg, shape, geo.kernel, geo.stride, geo.padding),
                             ops::avg_pool2d_backward(g, shape, geo.kernel, geo.stride, geo.padding), kExact, 0,
                             label("avg_pool2d_backward", shape, extra.str()));
    }
}

TEST_CASE("global average pooling matches the CPU reference") {
  for (const Shape& shape : kShapes) {
    Tensor x = testing::random_tensor(shape, 600 + shape_numel(shape)), gx = x.cuda();
    poison_next({shape[0], shape[1]});
    testing::require_close(ops::global_avg_pool_forward(gx), ops::global_avg_pool_forward(x), 1e-5f, 0,
                           label("global_avg_pool", shape));
    Tensor g = testing::random_tensor({shape[0], shape[1]}, 700 + shape_numel(shape)), gg = g.cuda();
    poison_next(shape);
    testing::require_close(ops::global_avg_pool_backward(gg, shape), ops::global_avg_pool_backward(g, shape), 1e-6f, 0,
                           label("global_avg_pool_backward", shape));
  }
}

TEST_CASE("batch norm matches the CPU reference in training and eval, running stats included") {
  std::vector<Shape> shapes = kShapes;
  for (const Shape& s : std::vector<Shape>{{5, 3}, {5, 64}, {2, 1}, {128, 512}, {4, 1, 1, 1}}) shapes.push_back(s);
  for (const Shape& shape : shapes)
    for (bool training : {true, false})
      for (bool affine : {false, true}) {
        const int64_t c = shape[1];
        std::ostringstream extra;
        extra << (training ? " training" : " eval") << (affine ? " affine" : "");
        // Mean 1.5, std 2: a mean well away from zero exercises the two-pass variance.
        Tensor x = Tensor::normal(shape, 1.5f, 2.f, 800 + shape_numel(shape));
        Tensor w = affine ? testing::random_tensor({c}, 801, 0.5f, 2.f) : Tensor();
        Tensor b = affine ? testing::random_tensor({c}, 802) : Tensor();
        Tensor rm = testing::random_tensor({c}, 803), rv = testing::random_tensor({c}, 804, 0.5f, 2.f);
        Tensor gx = x.cuda(), grm = rm.cuda(), grv = rv.cuda();
        Tensor gw = affine ? w.cuda() : Tensor(), gb = affine ? b.cuda() : Tensor();

        ops::BatchNormResult cpu = ops::batch_norm_forward(x, w, b, rm, rv, training, 0.1f, 1e-5f);
        poison_next(shape);
        ops::BatchNormResult gpu = ops::batch_norm_forward(gx, gw, gb, grm, grv, training, 0.1f, 1e-5f);
        testing::require_close(gpu.out, cpu.out, 1e-4f, 1e-4f, label("batch_norm out", shape, extra.str()));
        testing::require_close(gpu.mean, cpu.mean, 1e-5f, 1e-5f, label("batch_norm mean", shape, extra.str()));
        testing::require_close(gpu.invstd, cpu.invstd, 1e-5f, 1e-5f, label("batch_norm invstd", shape, extra.str()));
        testing::require_close(grm, rm, 1e-5f, 1e-5f, label("batch_norm running_mean", shape, extra.str()));
        testing::require_close(grv, rv, 1e-5f, 1e-5f, label("batch_norm running_var", shape, extra.str()));

        // Backward from the CPU's saved stats on both sides, so only the backward is compared.
        Tensor g = testing::random_tensor(shape, 805 + shape_numel(shape));
        Tensor gg = g.cuda(), gmean = cpu.mean.cuda(), ginvstd = cpu.invstd.cuda();
        ops::BatchNormGrads want = ops::batch_norm_backward(g, x, w, b, cpu.mean, cpu.invstd, training);
        poison_next(shape);
        ops::BatchNormGrads got = ops::batch_norm_backward(gg, gx, gw, gb, gmean, ginvstd, training);
        testing::require_close(got.grad_input, want.grad_input, 1e-4f, 1e-4f,
                               label("batch_norm_backward grad_input", shape, extra.str()));
        REQUIRE(got.grad_weight.defined() == affine);
        if (affine) {
          testing::require_close(got.grad_weight, want.grad_weight, 1e-3f, 1e-4f,
                                 label("batch_norm_backward grad_weight", shape, extra.str()));
          testing::require_close(got.grad_bias, want.grad_bias, 1e-3f, 1e-4f,
                                 label("batch_norm_backward grad_bias", shape, extra.str()));
        }
      }
}

TEST_CASE("batch norm and max-pool backward are deterministic on the GPU") {
  Tensor x = Tensor::normal({5, 64, 17, 17}, 0.f, 1.f, 900).cuda();
  Tensor g = testing::random_tensor({5, 64, 17, 17}, 901).cuda();
  Tensor rm = Tensor::zeros({64}, DType::F32, Device::CUDA), rv = Tensor::full({64}, 1.f, Device::CUDA);
  Tensor w = Tensor::full({64}, 1.f, Device::CUDA);
  ops::BatchNormResult f = ops::batch_norm_forward(x, w, Tensor(), rm, rv, true, 0.1f, 1e-5f);
  ops::BatchNormGrads a = ops::batch_norm_backward(g, x, w, Tensor(), f.mean, f.invstd, true);
  ops::BatchNormGrads b = ops::batch_norm_backward(g, x, w, Tensor(), f.mean, f.invstd, true);
  REQUIRE(a.grad_input.to_vector() == b.grad_input.to_vector());
  REQUIRE(a.grad_weight.to_vector() == b.grad_weight.to_vector());
  ops::MaxPool2dResult p = ops::max_pool2d_forward(x, 3, 1, 1);
  Tensor gp = testing::random_tensor(p.out.shape(), 902).cuda();
  REQUIRE(ops::max_pool2d_backward(gp, p.argmax, x.shape(), 3, 1, 1).to_vector() ==
          ops::max_pool2d_backward(gp, p.argmax, x.shape(), 3, 1, 1).to_vector());
}

TEST_CASE("BatchNorm2d on the GPU trains and evaluates like its CPU twin") {
  nn::BatchNorm2d cpu(3, true), gpu(3, true);
  gpu.to(Device::CUDA);
  for (bool training : {true, false}) {
    cpu.train(training);
    gpu.train(training);
    Tensor x = Tensor::normal({4, 3, 5, 7}, 0.5f, 1.5f, 910 + training);
    Tensor weights = testing::random_tensor(x.shape(), 911);
    // One forward and backward at a time: backward replays and then clears the whole tape.
    Var xc(x, true), xg(x.cuda(), true);
    Var yc = cpu(xc);
    backward(nn::sum(nn::mul(yc, Var(weights))));
    Var yg = gpu(xg);
    backward(nn::sum(nn::mul(yg, Var(weights.cuda()))));
    testing::require_close(yg.value(), yc.value(), 1e-4f, 1e-4f,
                           training ? "module out, training" : "module out, eval");
    testing::require_close(xg.grad(), xc.grad(), 1e-4f, 1e-4f, "module grad_input");
    auto pc = cpu.parameters(), pg = gpu.parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      testing::require_close(pg[i].var.grad(), pc[i].var.grad(), 1e-3f, 1e-4f, "module grad of " + pc[i].name);
      pc[i].var.zero_grad();
      pg[i].var.zero_grad();
    }
    testing::require_close(gpu.running_mean(), cpu.running_mean(), 1e-5f, 1e-5f, "module running_mean");
    testing::require_close(gpu.running_var(), cpu.running_var(), 1e-5f, 1e-5f, "module running_var");
  }
}
