#include "lattice/png_image.hpp"

#include <cstring>
#include <string>

#include <png.h>

#include "lattice/core/error.hpp"

namespace lattice::cli {

namespace {

constexpr int k_max_side = 1 << 15;

// Frees the libpng control structure on every path (success or exception).
struct PngImageGuard {
  png_image image;
  PngImageGuard() {
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
  }
  ~PngImageGuard() { png_image_free(&image); }
  PngImageGuard(const PngImageGuard&) = delete;
  PngImageGuard& operator=(const PngImageGuard&) = delete;
};

}  // namespace

RgbImage RgbImage::filled(int width, int height, seg::Rgb fill) {
  check(width >= 1 && width <= k_max_side && height >= 1 && height <= k_max_side, "RgbImage", "size",
        "width and height must be in [1, ", k_max_side, "], got ", width, " x ", height);
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  for (std::size_t i = 0; i < image.pixels.size(); i += 3) {
    image.pixels[i] = fill.r;
    image.pixels[i + 1] = fill.g;
    image.pixels[i + 2] = fill.b;
  }
  return image;
}

seg::Rgb RgbImage::at(int x, int y) const {
  check(x >= 0 && x < width && y >= 0 && y < height, "RgbImage::at", "x, y", "(", x, ", ", y, ") is outside the ",
        width, " x ", height, " image");
  const std::size_t i =
      (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  return {pixels[i], pixels[i + 1], pixels[i + 2]};
}

void RgbImage::set(int x, int y, seg::Rgb c) {
  check(x >= 0 && x < width && y >= 0 && y < height, "RgbImage::set", "x, y", "(", x, ", ", y, ") is outside the ",
        width, " x ", height, " image");
  const std::size_t i =
      (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  pixels[i] = c.r;
  pixels[i + 1] = c.g;
  pixels[i + 2] = c.b;
}

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  check(image.width >= 1 && image.width <= k_max_side && image.height >= 1 && image.height <= k_max_side, "write_png",
        "image", "width and height must be in [1, ", k_max_side, "], got ", image.width, " x ", image.height);
  check(image.pixels.size() == static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3,
        "write_png", "image", "has ", image.pixels.size(), " bytes, expected width * height * 3 = ",
        static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3);
  PngImageGuard g;
  g.image.width = static_cast<png_uint_32>(image.width);
  g.image.height = static_cast<png_uint_32>(image.height);
  g.image.format = PNG_FORMAT_RGB;
  const int ok = png_image_write_to_file(&g.image, path.c_str(), 0, image.pixels.data(), 0, nullptr);
  check<IoError>(ok != 0, "write_png", "path", path.string(), ": libpng could not write it (", g.image.message, ")");
}

RgbImage read_png(const std::filesystem::path& path) {
  PngImageGuard g;
  check<IoError>(png_image_begin_read_from_file(&g.image, path.c_str()) != 0, "read_png", "path", path.string(),
                 ": libpng could not read it (", g.image.message, ")");
  check<IoError>(
      g.image.width >= 1 && g.image.width <= k_max_side && g.image.height >= 1 && g.image.height <= k_max_side,
      "read_png", "path", path.string(), ": ", g.image.width, " x ", g.image.height, " pixels is outside [1, ",
      k_max_side, "] per side");
  g.image.format = PNG_FORMAT_RGB;
  RgbImage out;
  out.width = static_cast<int>(g.image.width);
  out.height = static_cast<int>(g.image.height);
  out.pixels.resize(static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height) * 3);
  png_color black{0, 0, 0};
  check<IoError>(png_image_finish_read(&g.image, &black, out.pixels.data(), 0, nullptr) != 0, "read_png", "path",
                 path.string(), ": libpng could not decode it (", g.image.message, ")");
  return out;
}

}  // namespace lattice::cli
