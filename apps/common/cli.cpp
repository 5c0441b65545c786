#include "apps/common/cli.h"

#include <cstdio>
#include <exception>

#include "engine/device.h"
#include "common/error.h"

namespace mdq::app {

bool parse_flags(int argc, char** argv, const char* usage,
                 const std::vector<std::pair<const char*, std::string*>>& flags,
                 const std::vector<std::pair<const char*, bool*>>& switches) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return false;
    }
    bool known = false;
    for (const auto& [name, target] : flags)
      if (a == name) {
        MDQ_CHECK(i + 1 < argc, a << " needs a value\n" << usage);
        *target = argv[++i];
        known = true;
      }
    for (const auto& [name, target] : switches)
      if (a == name) *target = known = true;
    MDQ_CHECK(known, "unknown option '" << a << "'\n" << usage);
  }
  return true;
}

int64_t parse_count(const char* flag, const std::string& value) {
  size_t used = 0;
  long long x = 0;
  try { x = std::stoll(value, &used); } catch (...) { used = 0; }
  MDQ_CHECK(used == value.size() && x > 0, flag << " must be a positive whole number, got '" << value << "'");
  return x;
}

Device pick_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") {
    MDQ_CHECK(cuda_available(), "--device cuda: " << cuda_unavailable_reason());
    return Device::CUDA;
  }
  MDQ_CHECK(name == "auto", "--device must be auto, cpu or cuda, got '" << name << "'");
  return cuda_available() ? Device::CUDA : Device::CPU;
}

std::shared_ptr<data::Dataset> pick_split(const data::Splits& splits, const std::string& name) {
  MDQ_CHECK(name == "test" || name == "val" || name == "train", "--split must be test, val or train, got '" << name << "'");
  auto ds = name == "test" ? splits.test : name == "val" ? splits.val : splits.train;
  MDQ_CHECK(ds, "split '" << name << "' does not exist for this run (it was trained without a validation split)");
  return ds;
}

int run_main(const char* app, int (*body)(int, char**), int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a killed app's log keeps every finished line
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", app, e.what());
    return 2;
  }
}

}  // namespace mdq::app
