// Counter-based random numbers: value i of a stream depends only on (seed, i). That makes
// initialisation independent of device and thread count.
#pragma once
#include <cstdint>

namespace mdq {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// Uniform in [0, 1), 24 random bits.
inline float uniform01(uint64_t seed, uint64_t i) {
  return static_cast<float>(splitmix64(seed * 0x2545F4914F6CDD1Dull + i) >> 40) * (1.0f / 16777216.0f);
}

// A small sequential generator for shuffles and augmentation (deterministic per seed).
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  uint64_t next() { return splitmix64(state_++); }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  uint64_t below(uint64_t n) { return next() % n; }  // n is small; modulo bias is negligible
 private:
  uint64_t state_;
};

}  // namespace mdq
