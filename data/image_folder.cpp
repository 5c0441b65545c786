// Image folders through stb_image (the one translation unit that holds its implementation).
#include "data/image_folder.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/error.h"

namespace fs = std::filesystem;

namespace mdq::data {
namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".ppm" || ext == ".pgm";
}

void check_dir(const std::string& dir, const char* what) {
  std::error_code ec;
  MDQ_CHECK(fs::is_directory(dir, ec), "data: " << what << " '" << dir << "' is missing (not a directory)");
}

}  // namespace

Image decode_image_bytes(const uint8_t* bytes, size_t size, int channels, const std::string& name) {
  MDQ_CHECK(channels == 1 || channels == 3, "data: decode '" << name << "': channels " << channels << " (1 or 3)");
  MDQ_CHECK(size > 0 && size < (size_t(1) << 31), "data: '" << name << "' is empty or too large (" << size << " bytes)");
  int w = 0, h = 0, file_channels = 0;
  stbi_uc* px = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &file_channels, channels);
  MDQ_CHECK(px, "data: cannot decode image '" << name << "': " << stbi_failure_reason());
  Image img;
  img.height = h;
  img.width = w;
  img.channels = channels;
  img.pixels.assign(px, px + static_cast<size_t>(w) * h * channels);
  stbi_image_free(px);
  return img;
}

Image decode_image(const std::string& path, int channels) {
  std::vector<uint8_t> bytes = read_file(path);
  return decode_image_bytes(bytes.data(), bytes.size(), channels, path);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  MDQ_CHECK(in, "data: cannot open '" << path << "' (missing or unreadable)");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

FileList scan_class_folders(const std::string& root, const std::vector<std::string>& classes,
                            const std::string& subdir) {
  check_dir(root, "image folder");
  FileList list;
  list.class_names = classes;
  if (list.class_names.empty()) {
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory()) list.class_names.push_back(e.path().filename().string());
    std::sort(list.class_names.begin(), list.class_names.end());
    MDQ_CHECK(!list.class_names.empty(), "data: image folder '" << root << "' has no class sub-folders");
  }
  for (size_t c = 0; c < list.class_names.size(); ++c) {
    fs::path dir = fs::path(root) / list.class_names[c];
    if (!subdir.empty()) dir /= subdir;
    check_dir(dir.string(), "class folder");
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
    MDQ_CHECK(!files.empty(), "data: class folder '" << dir.string() << "' holds no images (.jpg/.jpeg/.png)");
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      list.paths.push_back(std::move(f));
      list.labels.push_back(static_cast<int32_t>(c));
    }
  }
  return list;
}

FileList scan_tinyimagenet_val(const std::string& val_dir, const std::vector<std::string>& classes) {
  check_dir(val_dir, "Tiny ImageNet val folder");
  std::unordered_map<std::string, int> index;
  for (size_t c = 0; c < classes.size(); ++c) index[classes[c]] = static_cast<int>(c);
  std::string ann = (fs::path(val_dir) / "val_annotations.txt").string();
  FileList list;
  list.class_names = classes;
  int line_no = 0;
  for (const std::string& line : read_lines(ann)) {
    ++line_no;
    size_t tab1 = line.find('\t');
    MDQ_CHECK(tab1 != std::string::npos, "data: '" << ann << "' line " << line_no << " has no tab: '" << line << "'");
    size_t tab2 = line.find('\t', tab1 + 1);
    std::string file = line.substr(0, tab1), wnid = line.substr(tab1 + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab1 - 1);
    auto it = index.find(wnid);
    MDQ_CHECK(it != index.end(), "data: '" << ann << "' line " << line_no << " names class '" << wnid
                                           << "', which is not in wnids.txt");
    list.paths.push_back((fs::path(val_dir) / "images" / file).string());
    list.labels.push_back(it->second);
  }
  MDQ_CHECK(!list.paths.empty(), "data: '" << ann << "' lists no images");
  return list;
}

RawImages decode_all(const FileList& list, int channels, int height, int width, int threads) {
  RawImages out;
  out.count = static_cast<int64_t>(list.paths.size());
  out.channels = channels;
  out.labels = list.labels;
  if (out.count == 0) return out;
  if (height <= 0 || width <= 0) {
    Image first = decode_image(list.paths[0], channels);
    height = first.height;
    width = first.width;
  }
  out.height = height;
  out.width = width;
  const size_t image_bytes = static_cast<size_t>(height) * width * channels;
  out.pixels.resize(image_bytes * static_cast<size_t>(out.count));
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, out.count));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      for (int64_t i; (i = next.fetch_add(1)) < out.count;) {
        const std::string& path = list.paths[static_cast<size_t>(i)];
        Image img = decode_image(path, channels);
        MDQ_CHECK(img.height == height && img.width == width,
                  "data: image '" << path << "' is " << img.height << "x" << img.width << "; every image of this dataset must be "
                                  << height << "x" << width);
        std::memcpy(out.pixels.data() + image_bytes * static_cast<size_t>(i), img.pixels.data(), image_bytes);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = out.count;  // stop the others early
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace mdq::data
