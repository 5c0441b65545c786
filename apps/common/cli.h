// What the small apps (mdq-eval, mdq-export, mdq-infer) share: "--name value" flags, the
// device and split choices, and the main() wrapper that turns an exception into a message and
// exit code 2.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "engine/dtype.h"

namespace mdq::app {

// Fills each named string from "--name value" and sets each switch given alone ("--name");
// unknown flags are errors that print the usage.
// Returns false when --help was asked for (usage already printed).
bool parse_flags(int argc, char** argv, const char* usage,
                 const std::vector<std::pair<const char*, std::string*>>& flags,
                 const std::vector<std::pair<const char*, bool*>>& switches = {});
int64_t parse_count(const char* flag, const std::string& value);  // a positive whole number
Device pick_device(const std::string& name);                       // auto | cpu | cuda
std::shared_ptr<data::Dataset> pick_split(const data::Splits& splits, const std::string& name);  // test|val|train
// Runs body(argc, argv); an exception becomes "<app>: error: <message>" and exit code 2.
int run_main(const char* app, int (*body)(int, char**), int argc, char** argv);

}  // namespace mdq::app
