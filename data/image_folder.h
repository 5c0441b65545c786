// Image folders: decoding JPEG/PNG through stb_image, listing one-folder-per-class layouts
// (plain, Tiny ImageNet, ImageNet), and decoding a whole list once into memory on all cores.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace mdq::data {

// Decodes to channels (1 or 3) whatever the file has; an undecodable file names itself and
// stb's reason.
Image decode_image(const std::string& path, int channels);
Image decode_image_bytes(const uint8_t* bytes, size_t size, int channels, const std::string& name);

// Non-empty lines, trailing whitespace and '\r' stripped; a missing file is an error.
std::vector<std::string> read_lines(const std::string& path);

struct FileList {
  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  std::vector<std::string> class_names;
};

// root/<class>/<subdir>/<image files>, files sorted by name within a class. classes gives the
// label order; empty means the sorted sub-folder names of root. A missing root or class folder,
// or a class with no images, is an error.
FileList scan_class_folders(const std::string& root, const std::vector<std::string>& classes,
                            const std::string& subdir = "");

// Tiny ImageNet's val/: val_annotations.txt lines "<file>\t<wnid>\t<bbox...>", images in val/images/.
FileList scan_tinyimagenet_val(const std::string& val_dir, const std::vector<std::string>& classes);

// Decodes every file of list once (threads 0 = all hardware threads). All images must have the
// size height x width (0 = the first image's size); a different one is an error naming the file.
RawImages decode_all(const FileList& list, int channels, int height, int width, int threads = 0);

}  // namespace mdq::data
