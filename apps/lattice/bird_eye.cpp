#include "lattice/bird_eye.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lattice/core/error.hpp"

namespace lattice::cli {

RgbImage render_bird_eye(const Array& positions, const std::vector<std::int32_t>& classes,
                         const BirdEyeOptions& options, BirdEyeStats* stats) {
  constexpr const char* op = "render_bird_eye";
  check<TypeError>(positions.dtype() == DType::f32 && positions.device().is_cpu(), op, "positions",
                   "expected float32 on the CPU, got ", positions.describe());
  check(positions.ndim() == 2 && positions.dim(1) == 3, op, "positions", "expected (N, 3), got ",
        positions.shape().str());
  const std::int64_t n = positions.dim(0);
  check(static_cast<std::int64_t>(classes.size()) == n, op, "classes", "has ", classes.size(), " entries for ", n,
        " points");
  const double mpp = options.metres_per_pixel;
  const double half = options.half_extent;
  check(std::isfinite(mpp) && mpp > 0, op, "metres_per_pixel", "must be positive, got ", mpp);
  check(std::isfinite(half) && half > 0, op, "half_extent", "must be positive, got ", half);
  const double side_px = std::round(2 * half / mpp);
  check(side_px >= 1 && side_px <= 32768, op, "half_extent", "2 * ", half, " m at ", mpp, " m per pixel gives ",
        side_px, " pixels per side, expected [1, 32768]");
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t c = classes[static_cast<std::size_t>(i)];
    check(c == seg::k_ignore || (c >= 0 && c < seg::k_num_classes), op, "classes", "point ", i, " has class ", c,
          ", expected [0, ", seg::k_num_classes, ") or ", seg::k_ignore);
  }

  const int side = static_cast<int>(side_px);
  RgbImage image = RgbImage::filled(side, side, options.background);
  // Height of the point drawn in each pixel: the highest one wins (first one on ties).
  std::vector<float> top(static_cast<std::size_t>(side) * static_cast<std::size_t>(side),
                         -std::numeric_limits<float>::infinity());
  const float* p = positions.data<float>();
  BirdEyeStats s;
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = p[3 * i], y = p[3 * i + 1], z = p[3 * i + 2];
    const double col = std::floor((half - y) / mpp);
    const double row = std::floor((half - x) / mpp);
    // !(a < b) also rejects NaN.
    if (!std::isfinite(z) || !(col >= 0 && col < side && row >= 0 && row < side)) {
      ++s.skipped;
      continue;
    }
    ++s.drawn;
    const auto k = static_cast<std::size_t>(row) * static_cast<std::size_t>(side) + static_cast<std::size_t>(col);
    if (!(z > top[k])) continue;
    top[k] = z;
    image.set(static_cast<int>(col), static_cast<int>(row), seg::class_color(classes[static_cast<std::size_t>(i)]));
  }
  if (stats) *stats = s;
  return image;
}

RgbImage side_by_side(const RgbImage& left, const RgbImage& right, int gap, seg::Rgb fill) {
  check(left.height == right.height, "side_by_side", "right", "has height ", right.height, ", the left image ",
        left.height);
  check(gap >= 0, "side_by_side", "gap", "must be >= 0, got ", gap);
  RgbImage out = RgbImage::filled(left.width + gap + right.width, left.height, fill);
  const auto row_bytes = [](const RgbImage& im) { return static_cast<std::size_t>(im.width) * 3; };
  for (int y = 0; y < out.height; ++y) {
    std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(y) * row_bytes(out);
    const std::uint8_t* a = left.pixels.data() + static_cast<std::size_t>(y) * row_bytes(left);
    const std::uint8_t* b = right.pixels.data() + static_cast<std::size_t>(y) * row_bytes(right);
    std::copy(a, a + row_bytes(left), dst);
    std::copy(b, b + row_bytes(right), dst + row_bytes(left) + static_cast<std::size_t>(gap) * 3);
  }
  return out;
}

}  // namespace lattice::cli
