// ScopedEnv: sets an environment variable (value null: unsets it) for its lifetime, then puts
// back what was there. For the run-time A/B switches the engine reads (MDQ_STEM_DIRECT, ...) in
// tests and benchmarks, so that one process can time or compare both paths.
#pragma once
#include <cstdlib>
#include <string>

namespace mdq {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* e = std::getenv(name)) saved_ = e, had_ = true;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), saved_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, saved_;
  bool had_ = false;
};

}  // namespace mdq
