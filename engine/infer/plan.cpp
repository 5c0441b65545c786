// A lowered network (engine/infer/lower.h): running its steps on a batch, and what runs where.
#include <string>
#include <vector>

#include "engine/infer/lower.h"
#include "engine/infer/steps.h"

namespace mdq::infer {
namespace {

// "n whats", or "" for none.
std::string count(int64_t n, const std::string& what) {
  return n ? std::to_string(n) + " " + what + (n == 1 ? "" : "s") : "";
}

// The non-empty parts joined by sep.
std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (const std::string& p : parts)
    if (!p.empty()) s += (s.empty() ? "" : sep) + p;
  return s;
}

std::string group(const std::string& name, const std::vector<std::string>& parts) {
  const std::string s = join(parts, ", ");
  return s.empty() ? s : name + ": " + s;
}

}  // namespace

const char* packed_precision_name(PackedPrecision p) { return p == PackedPrecision::BF16 ? "bf16" : "split"; }

PackedPrecision parse_packed_precision(const std::string& name) {
  if (name == "bf16") return PackedPrecision::BF16;
  MDQ_CHECK(name == "split", "packed precision must be split or bf16, got '" << name << "'");
  return PackedPrecision::SplitBF16;
}

std::string Census::text() const {
  const std::string blocks = w1a1_blocks ? " (" + count(w1a1_blocks, "residual block") + ")" : "";
  const std::string signs = stem_signs ? " (" + std::to_string(stem_signs) + " writes its signs)" : "";
  return join({group("W1A1", {count(w1a1_convs, "conv") + blocks, count(w1a1_linears, "linear")}),
               group("W1A16", {count(w1a16[0][0], "binary conv"), count(w1a16[0][1], "ternary conv"),
                               count(w1a16[1][0], "binary linear"), count(w1a16[1][1], "ternary linear")}),
               group("float", {count(float_convs, "conv") + signs, count(float_linears, "linear")})},
              "; ");
}

Plan::Plan(LowerOptions options, std::vector<std::unique_ptr<Step>> steps)
    : options_(options), steps_(std::move(steps)) {}
Plan::~Plan() = default;

Tensor Plan::logits(const Tensor& images) const {
  MDQ_CHECK(images.dtype() == DType::F32 && images.ndim() == 4,
            "Plan::logits: expects f32 NCHW images, got " << images.describe());
  MDQ_CHECK(images.device() == options_.device,
            "Plan::logits: images " << images.describe() << " are not on " << device_name(options_.device));
  Activation a{images};
  run_all(steps_, a);
  return a.x.ndim() == 2 ? a.x : a.x.reshape({images.dim(0), a.x.numel() / images.dim(0)});
}

Census Plan::census() const {
  Census c;
  count_all(steps_, c);
  return c;
}

}  // namespace mdq::infer
