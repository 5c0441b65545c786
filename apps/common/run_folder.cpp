#include "apps/common/run_folder.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "common/error.h"

namespace mdq::app {
namespace {

const char* const kRunFiles[] = {"config.txt", "metrics.jsonl", "last.ckpt", "best.ckpt"};

bool exists(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if ((i == path.size() || path[i] == '/') && !cur.empty()) {
      struct stat st{};
      if (stat(cur.c_str(), &st) == 0) {
        MDQ_CHECK(S_ISDIR(st.st_mode), "--out: '" << cur << "' is a file, not a folder");
      } else {
        MDQ_CHECK(mkdir(cur.c_str(), 0755) == 0 || errno == EEXIST,
                  "--out: cannot create folder '" << cur << "': " << std::strerror(errno));
      }
    }
    if (i < path.size()) cur += path[i];
  }
}

}  // namespace

void check_run_folder(const TrainOptions& o) {
  if (o.resume) {
    MDQ_CHECK(exists(o.out + "/last.ckpt"), "--resume: no checkpoint at " << o.out << "/last.ckpt");
    return;
  }
  std::string held;
  for (const char* name : kRunFiles)
    if (exists(o.out + "/" + name)) held += std::string(held.empty() ? "" : ", ") + name;
  MDQ_CHECK(held.empty() || o.overwrite, "--out '" << o.out << "' already holds a run (" << held
                                                  << "). Continue it with --resume, replace it with --overwrite, "
                                                     "or pick another --out");
}

void prepare_run_folder(const TrainOptions& o) {
  check_run_folder(o);
  make_dirs(o.out);
  // Writable? A probe file says so now, not after the first epoch.
  const std::string probe = o.out + "/.mdq-write-probe";
  FILE* f = std::fopen(probe.c_str(), "w");
  MDQ_CHECK(f, "--out: cannot write into '" << o.out << "': " << std::strerror(errno));
  std::fclose(f);
  std::remove(probe.c_str());

  if (!o.resume)
    for (const char* name : kRunFiles) std::remove((o.out + "/" + name).c_str());  // --overwrite, or nothing there

  // Leftovers of a save that was killed before its rename (engine/checkpoint.cpp).
  if (DIR* d = opendir(o.out.c_str())) {
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.find(".ckpt.tmp.") != std::string::npos) stale.push_back(name);
    }
    closedir(d);
    for (const std::string& name : stale) {
      std::remove((o.out + "/" + name).c_str());
      std::printf("removed %s/%s, left by an interrupted checkpoint save\n", o.out.c_str(), name.c_str());
    }
  }
}

void trim_metrics(const std::string& path, int64_t iteration) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    const size_t at = line.find("\"iter\": ");
    if (at == std::string::npos) continue;  // the final test line of a finished run
    if (std::stoll(line.substr(at + 8)) <= iteration) kept += line + "\n";
  }
  in.close();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    MDQ_CHECK(out.good(), "cannot rewrite " << path << ": " << std::strerror(errno));
  }
  MDQ_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot replace " << path << ": " << std::strerror(errno));
}

}  // namespace mdq::app
