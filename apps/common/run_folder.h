// The run folder (--out) of mdq-train: made or checked before anything else happens, so a typo
// never destroys a run and a crashed run leaves nothing behind that the next start trips over.
#pragma once
#include <cstdint>
#include <string>

#include "apps/common/options.h"

namespace mdq::app {

// Before anything is loaded, and without writing: a folder that already holds a run (config.txt,
// metrics.jsonl or a checkpoint) needs --resume or --overwrite; --resume needs its last.ckpt.
void check_run_folder(const TrainOptions& o);
// Creates o.out (and its parents), saying why when it cannot (read-only, permission, a file in
// the way); --overwrite removes the old run's files; removes the temporary files of checkpoint
// saves that a kill interrupted ("*.ckpt.tmp.<pid>").
void prepare_run_folder(const TrainOptions& o);

// After a resume from iteration `iteration`: drops the metric lines of iterations after it (they
// will be logged again) and the final test line, rewriting metrics.jsonl atomically.
void trim_metrics(const std::string& path, int64_t iteration);

}  // namespace mdq::app
