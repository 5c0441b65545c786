// Parsers for the raw dataset file formats (CIFAR binary records, idx arrays, gzip). They work
// on bytes already in memory and depend only on zlib and common/error.h, so the libFuzzer
// targets in tests/fuzz/ build them alone. Every malformed input is an mdq::Error naming the
// file and what is wrong; nothing here trusts a size it read from the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mdq::data {

// Decoded images in one contiguous block: pixels are uint8 HWC, image i at
// pixels[i * height * width * channels]; labels[i] in [0, num_classes).
struct RawImages {
  int64_t count = 0;
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  std::vector<int32_t> coarse_labels;  // CIFAR-100 only (20 superclasses); empty otherwise
};

// The whole file as bytes; a missing or unreadable file is an error naming it.
std::vector<uint8_t> read_file(const std::string& path);

// If bytes start with the gzip magic (1f 8b) inflate them, else return them unchanged. A corrupt
// or truncated stream, or output beyond max_bytes (a guard against gzip bombs), is an error.
std::vector<uint8_t> gunzip_if_needed(std::vector<uint8_t> bytes, const std::string& name,
                                      size_t max_bytes = size_t(1) << 31);

// CIFAR binary: records of [label][1024 R][1024 G][1024 B] (CIFAR-10, 3073 bytes) or
// [coarse][fine][R G B] (CIFAR-100, 3074 bytes). The file size must be a whole number of
// records and every label must be < num_classes (10 or 100; coarse < 20). Pixels come out HWC.
enum class CifarKind { Cifar10, Cifar100 };
RawImages parse_cifar(const uint8_t* bytes, size_t size, CifarKind kind, const std::string& name);

// An idx array (MNIST format): magic 00 00 <type> <ndims>, ndims big-endian u32 dims, then the
// data. Only type 0x08 (unsigned byte) is accepted; the data size must match the dims exactly.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};
IdxArray parse_idx(const uint8_t* bytes, size_t size, const std::string& name);

// An idx image file ([N, H, W]) and label file ([N]) into RawImages (channels = 1). Counts must
// agree and labels be < num_classes.
RawImages idx_to_images(const IdxArray& images, const IdxArray& labels, int num_classes,
                        const std::string& images_name, const std::string& labels_name);

}  // namespace mdq::data
