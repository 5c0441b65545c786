// Checkpoint files: named tensors plus a small text metadata blob (DESIGN.md §2 "Errors":
// a magic, a version and a checksum; written to a temporary file and renamed).
//
// Layout (integers little-endian):
//   "MDQCKPT1" | u32 version | u64 metadata length, metadata bytes | u64 tensor count |
//   per tensor: u32 name length, name, u8 dtype, u8 ndim, i64 dims[ndim], u64 byte count, bytes |
//   u64 FNV-1a 64 checksum of everything before it.
#pragma once
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mdq {

constexpr uint32_t kCheckpointVersion = 1;

// Writes the tensors (from any device; copied to the host) and the metadata to path, atomically:
// "<path>.tmp.<pid>" is written, flushed and fsync'ed, then renamed over path, so a crash leaves
// either the old file or the new one. Names must be non-empty and distinct.
void save_checkpoint(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& metadata);

// Saves in the background, so that training does not wait for the disk: save() takes a host
// snapshot of the tensors (training may change them as soon as it returns), waits for the
// previous save to be on disk, and hands the snapshot to a thread that runs save_checkpoint (the
// same bytes, the same temporary file and rename, so a crash still leaves the old file or the new
// one). A failed write is thrown by the next save() or wait(); the destructor waits and prints
// one that nobody asked about.
class CheckpointWriter {
 public:
  CheckpointWriter() = default;
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void save(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors, std::string metadata);
  void wait();  // the last save is on disk (or its error is thrown)

 private:
  std::thread thread_;
  std::exception_ptr error_;
};

struct Checkpoint {
  std::string metadata;
  std::vector<std::pair<std::string, Tensor>> tensors;  // CPU tensors, in file order
  std::string path;                                     // where it was loaded from, for messages

  bool has(const std::string& name) const;
  // Throws, naming the missing tensor, the file and the names it does have.
  const Tensor& get(const std::string& name) const;
};

// Reads a checkpoint onto the CPU. Refuses, with a message naming the file and the problem, a
// missing or unreadable file, a wrong magic ("not an mdq checkpoint"), an unsupported version,
// a truncated file, a checksum mismatch ("corrupt: checksum mismatch") and sizes that the file
// cannot hold (no allocation is ever larger than the file).
Checkpoint load_checkpoint(const std::string& path);

}  // namespace mdq
