// PointCloud helpers and the by-extension dispatch.
#include "lattice/io/point_cloud.hpp"

#include <cmath>
#include <cstring>

#include "io/reader_util.hpp"

namespace lattice::io {

const Array* PointCloud::field(const std::string& name) const {
  for (const auto& [field_name, values] : fields) {
    if (field_name == name) return &values;
  }
  return nullptr;
}

PointCloud read_point_cloud(const std::filesystem::path& path) {
  const std::string ext = detail::to_lower(path.extension().string());
  if (ext == ".bin") return read_kitti_bin(path);
  if (ext == ".pcd") return read_pcd(path);
  if (ext == ".ply") return read_ply(path);
  if (ext == ".las") return read_las(path);
  detail::ReadContext("read_point_cloud", path)
      .fail("unsupported extension ", detail::quoted(ext), " (expected .bin, .pcd, .ply or .las)");
}

namespace {

// Rows of `src` (any dtype and trailing shape) whose `keep` flag is set, as a
// new CPU array.
Array filter_rows(const Array& src, const std::vector<std::int64_t>& kept_rows) {
  const Array host = src.to(Device::cpu());
  Shape shape = host.shape();
  shape[0] = static_cast<std::int64_t>(kept_rows.size());
  Array out = Array::empty(shape, host.dtype(), Device::cpu());
  const std::size_t row_bytes = host.row_bytes();
  if (row_bytes == 0) return out;
  const auto* in = static_cast<const unsigned char*>(host.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  for (std::size_t i = 0; i < kept_rows.size(); ++i) {
    std::memcpy(dst + i * row_bytes, in + static_cast<std::size_t>(kept_rows[i]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace

PointCloud drop_non_finite(const PointCloud& cloud) {
  constexpr std::string_view k_op = "drop_non_finite";
  PointCloud out;
  if (!cloud.positions.defined()) {
    check(cloud.fields.empty() && !cloud.labels, k_op, "cloud", "has fields or labels but no positions");
    return out;
  }
  const Array& positions = cloud.positions;
  check<TypeError>(positions.dtype() == DType::f32, k_op, "cloud.positions", "must be float32 (got ",
                   dtype_name(positions.dtype()), ")");
  check(positions.ndim() == 2 && positions.dim(1) == 3, k_op, "cloud.positions", "must have shape (N, 3) (got ",
        positions.shape().str(), ")");
  const std::int64_t n = positions.dim(0);
  for (const auto& [name, values] : cloud.fields) {
    check(values.defined() && values.ndim() >= 1 && values.dim(0) == n, k_op, "cloud.fields", "field '", name,
          "' must have one row per point (", n, ")");
  }
  if (cloud.labels) {
    check(cloud.labels->defined() && cloud.labels->ndim() >= 1 && cloud.labels->dim(0) == n, k_op, "cloud.labels",
          "must have one row per point (", n, ")");
  }

  const Array host = positions.to(Device::cpu());
  const float* p = host.data<float>();
  std::vector<std::int64_t> kept;
  kept.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    if (std::isfinite(p[3 * i]) && std::isfinite(p[3 * i + 1]) && std::isfinite(p[3 * i + 2])) kept.push_back(i);
  }
  out.positions = filter_rows(host, kept);
  for (const auto& [name, values] : cloud.fields) out.fields.emplace_back(name, filter_rows(values, kept));
  if (cloud.labels) out.labels = filter_rows(*cloud.labels, kept);
  return out;
}

}  // namespace lattice::io
