// KITTI / SemanticKITTI scans (.bin) and their per-point labels (.label).
// Both formats are headerless little-endian arrays, so the file size alone
// tells the point count and is the only thing to validate.
#include <cstring>

#include "io/reader_util.hpp"
#include "lattice/io/point_cloud.hpp"

namespace lattice::io {

namespace {

constexpr std::size_t k_bin_point_bytes = 4 * sizeof(float);  // x, y, z, remission
constexpr bool k_swap = detail::needs_swap(/*big_endian=*/false);

}  // namespace

Array read_kitti_labels(const std::filesystem::path& path, std::int64_t expected_points) {
  const detail::ReadContext ctx("read_kitti_labels", path);
  const std::string bytes = detail::load_file(ctx);
  if (bytes.size() % sizeof(std::uint32_t) != 0) {
    ctx.fail("size ", bytes.size(), " bytes is not a multiple of 4 (one uint32 label per point)");
  }
  const auto n = static_cast<std::int64_t>(bytes.size() / sizeof(std::uint32_t));
  if (expected_points >= 0 && n != expected_points) {
    ctx.fail("has ", n, " labels but the scan has ", expected_points, " points");
  }
  Array labels = Array::empty({n}, DType::u32, Device::cpu());
  auto* out = labels.data<std::uint32_t>();
  const auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  if constexpr (k_swap) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = detail::load_unsigned<std::uint32_t>(src + 4 * i, true);
  } else if (n > 0) {
    std::memcpy(out, src, bytes.size());
  }
  return labels;
}

PointCloud read_kitti_bin(const std::filesystem::path& path, const std::optional<std::filesystem::path>& label_path) {
  const detail::ReadContext ctx("read_kitti_bin", path);
  const std::string bytes = detail::load_file(ctx);
  if (bytes.size() % k_bin_point_bytes != 0) {
    ctx.fail("size ", bytes.size(), " bytes is not a multiple of 16 (float32 x, y, z, remission per point)");
  }
  const auto n = static_cast<std::int64_t>(bytes.size() / k_bin_point_bytes);

  PointCloud cloud;
  cloud.positions = Array::empty({n, 3}, DType::f32, Device::cpu());
  Array remission = Array::empty({n}, DType::f32, Device::cpu());
  auto* pos = cloud.positions.data<float>();
  auto* rem = remission.data<float>();
  const auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  for (std::int64_t i = 0; i < n; ++i) {
    const unsigned char* p = src + static_cast<std::size_t>(i) * k_bin_point_bytes;
    for (std::int64_t c = 0; c < 3; ++c) {
      pos[3 * i + c] = detail::load_as_float(p + sizeof(float) * c, detail::Scalar::f32, k_swap);
    }
    rem[i] = detail::load_as_float(p + 3 * sizeof(float), detail::Scalar::f32, k_swap);
  }
  cloud.fields.emplace_back("remission", std::move(remission));
  if (label_path) cloud.labels = read_kitti_labels(*label_path, n);
  return cloud;
}

}  // namespace lattice::io
