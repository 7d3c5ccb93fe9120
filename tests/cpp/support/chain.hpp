// The realistic chain of issue 4 on a real scan, shared by the CPU test
// (float32 against float64) and the GPU test (CUDA against the CPU):
//   voxelize (0.05 m, mean of x, y, z, remission) -> subm conv k3 (4 -> 16)
//   -> max pool k2 s2 -> transposed conv k2 s2 onto the voxelized support
//   (16 -> 8) -> devoxelize (linear and nearest) to every point.
#pragma once

#include <cstdint>
#include <vector>

#include "lattice/lattice.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {

struct ChainResult {
  std::int64_t points = 0, voxels = 0, pooled = 0, upsampled_rows = 0;
  bool upsampled_on_voxel_key = false;  // the transposed conv landed on the voxelized set
  Array voxel_coords;                   // (voxels, 4) int32 on the host
  Array pooled_coords;                  // (pooled, 4) int32 on the host
  Array inverse_rows;                   // (points,) int32 on the host
  Array upsampled;                      // (voxels, 8) float64 on the host: transposed conv output
  Array linear, nearest;                // (points, 8) float64 on the host
};

// Weights are drawn from `seed` in float64 and rounded to `dtype`, so every
// device and dtype runs the same network.
inline ChainResult run_chain(const io::PointCloud& cloud, Device device, DType dtype, std::uint64_t seed = 7) {
  const std::int64_t n = cloud.size();
  std::vector<float> f4(static_cast<std::size_t>(n * 4));
  const float* p = cloud.positions.data<float>();
  const Array* remission = cloud.field("remission");
  for (std::int64_t i = 0; i < n; ++i) {
    for (int a = 0; a < 3; ++a) f4[static_cast<std::size_t>(4 * i + a)] = p[3 * i + a];
    f4[static_cast<std::size_t>(4 * i + 3)] = remission ? remission->data<float>()[i] : 1.0f;
  }
  const Array points = cloud.positions.to(device);
  const ops::Float3 voxel_size{0.05};
  const ops::Voxelized vox =
      ops::voxelize(points, Array::from_vector(f4, Shape{n, 4}).to(device), {.voxel_size = voxel_size});
  const SparseTensor x = vox.tensor.replace_feats(vox.tensor.feats().astype(dtype));

  Rng rng(seed);
  auto weights = [&](std::int64_t k, std::int64_t cin, std::int64_t cout, double scale) {
    std::vector<double> w(static_cast<std::size_t>(k * cin * cout));
    for (double& v : w) v = rng.uniform(-scale, scale);
    return Array::from_vector(w, Shape{k, cin, cout}).astype(dtype).to(device);
  };
  const Array w1 = weights(27, 4, 16, 0.1), w2 = weights(8, 16, 8, 0.1);
  std::vector<double> b(8);
  for (double& v : b) v = rng.uniform(-1, 1);
  const Array b2 = Array::from_vector(b, Shape{8}).astype(dtype).to(device);

  const SparseTensor h = ops::subm_conv3d(x, w1);
  const SparseTensor pooled = ops::max_pool3d(h);
  const SparseTensor up = ops::conv_transpose3d(pooled, w2, b2, {.kernel_size = 2, .stride = 2, .coordinates = x});
  const Array linear = ops::devoxelize(up, points, {.voxel_size = voxel_size});
  const Array nearest =
      ops::devoxelize(up, points, {.voxel_size = voxel_size, .interpolation = ops::Interpolation::nearest});

  ChainResult r;
  r.points = n;
  r.voxels = x.rows();
  r.pooled = pooled.rows();
  r.upsampled_rows = up.rows();
  r.upsampled_on_voxel_key = up.key() == x.key();
  r.voxel_coords = x.coords().rows(0, r.voxels).to(Device::cpu());
  r.pooled_coords = pooled.coords().rows(0, r.pooled).to(Device::cpu());
  r.inverse_rows = vox.inverse_rows.to(Device::cpu());
  r.upsampled = up.feats().rows(0, r.upsampled_rows).to(Device::cpu()).astype(DType::f64);
  r.linear = linear.to(Device::cpu()).astype(DType::f64);
  r.nearest = nearest.to(Device::cpu()).astype(DType::f64);
  return r;
}

// Largest |a - b| relative to the root-mean-square of b (a scale-free agreement measure).
inline double relative_max_error(const Array& a, const Array& b) {
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  double rms = 0, worst = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) rms += y[i] * y[i];
  rms = std::sqrt(rms / std::max<std::int64_t>(1, b.numel()));
  for (std::int64_t i = 0; i < b.numel(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return rms > 0 ? worst / rms : worst;
}

}  // namespace lattice::testing
