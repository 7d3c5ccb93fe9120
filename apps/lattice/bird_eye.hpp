// Bird's-eye (top-down) rasterization of a labelled point cloud: each point
// becomes one pixel coloured by its class (SemanticKITTI colours), the
// highest point of a pixel wins (a car roof covers the road beneath it).
//
// Geometry: the sensor frame (x forward, y left, z up) seen from above with x
// up the image and y to the left: a square of side 2 * half_extent metres
// centred on the origin at metres_per_pixel, so pixel (col, row) covers
//   y in (half - (col + 1) * mpp, half - col * mpp],  x likewise with row.
// Points outside the square (or with a non-finite coordinate) are skipped.
#pragma once

#include <cstdint>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/png_image.hpp"
#include "lattice/segmentation_data.hpp"

namespace lattice::cli {

struct BirdEyeOptions {
  double half_extent = 51.2;        // metres each side of the sensor (SemanticKITTI's usual range)
  double metres_per_pixel = 0.1;    // 51.2 m at 0.1 m: 1024 x 1024
  seg::Rgb background{12, 12, 16};  // dark, so that every class colour stands out
};

struct BirdEyeStats {
  std::int64_t drawn = 0;    // points inside the square
  std::int64_t skipped = 0;  // points outside it or non-finite
};

// positions: (N, 3) float32 on the CPU; classes: N train ids or seg::k_ignore.
// ValueError for a bad shape, a count mismatch, an unknown class id or
// options that do not give a 1..32768-pixel square.
RgbImage render_bird_eye(const Array& positions, const std::vector<std::int32_t>& classes,
                         const BirdEyeOptions& options = {}, BirdEyeStats* stats = nullptr);

// `left` and `right` side by side (same height), `gap` columns of `fill` between.
RgbImage side_by_side(const RgbImage& left, const RgbImage& right, int gap, seg::Rgb fill);

}  // namespace lattice::cli
