// RGB8 images and PNG files through libpng (its "simplified API", which
// reports errors through png_image::message instead of longjmp, so no C++
// object is ever skipped by a longjmp). Every libpng failure becomes an
// IoError naming the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "lattice/segmentation_data.hpp"

namespace lattice::cli {

// Row-major, top row first, 3 bytes (r, g, b) per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;

  // A width x height image filled with `fill`; ValueError unless both are in [1, 1 << 15].
  static RgbImage filled(int width, int height, seg::Rgb fill);
  seg::Rgb at(int x, int y) const;  // ValueError outside the image
  void set(int x, int y, seg::Rgb c);
};

// Writes an 8-bit RGB PNG; IoError naming `path` when libpng fails (e.g. the
// folder does not exist), ValueError for an empty or inconsistent image.
void write_png(const std::filesystem::path& path, const RgbImage& image);
// Reads any PNG libpng can decode, converted to 8-bit RGB (alpha dropped
// against black); IoError naming `path` for a missing or malformed file.
RgbImage read_png(const std::filesystem::path& path);

}  // namespace lattice::cli
