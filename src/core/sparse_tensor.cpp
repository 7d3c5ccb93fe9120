#include "lattice/core/sparse_tensor.hpp"

#include <vector>

#include "backend/cpu/coord_hash.hpp"
#include "backend/cuda/api.hpp"
#include "relation/coord_key.hpp"

namespace lattice {

namespace {

constexpr const char* k_op = "SparseTensor";

// Host-side checks of coordinate values: batch range, divisibility by the
// stride, key range of the logical coordinates. Returns rows per batch item.
std::vector<std::int32_t> check_coordinate_values(const Array& host_coords, std::int64_t rows, Int3 stride) {
  const std::int32_t* c = host_coords.data<std::int32_t>();
  std::vector<std::int32_t> batch_counts;
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int32_t* r = c + 4 * i;
    check(r[0] >= 0 && r[0] <= detail::k_batch_max, k_op, "coords", "row ", i, " has batch index ", r[0],
          " outside [0, ", detail::k_batch_max, "]");
    for (int a = 0; a < 3; ++a) {
      const std::int32_t v = r[a + 1];
      check(v % stride[a] == 0, k_op, "coords", "row ", i, " coordinate ", v, " on axis ", "xyz"[a],
            " is not divisible by the stride ", stride.str());
      const std::int32_t logical = v / stride[a];
      check(detail::axis_fits(logical), k_op, "coords", "row ", i, " coordinate ", v, " on axis ", "xyz"[a],
            " (logical ", logical, " at stride ", stride[a], ") overflows the hash key range [", detail::k_axis_min,
            ", ", detail::k_axis_max, "]");
    }
    if (static_cast<std::size_t>(r[0]) >= batch_counts.size())
      batch_counts.resize(static_cast<std::size_t>(r[0]) + 1, 0);
    ++batch_counts[static_cast<std::size_t>(r[0])];
  }
  return batch_counts;
}

std::optional<Array> checked_batch_counts(const std::optional<Array>& given_counts,
                                          const std::vector<std::int32_t>& counts, Device device) {
  if (!given_counts) {
    return Array::from_vector(counts, Shape{static_cast<std::int64_t>(counts.size())}, device);
  }
  const Array& given = *given_counts;
  check<TypeError>(given.dtype() == DType::i32, k_op, "batch_counts", "must be int32, got ", dtype_name(given.dtype()));
  check(given.ndim() == 1 && given.dim(0) >= static_cast<std::int64_t>(counts.size()), k_op, "batch_counts",
        "must have shape (B,) with B > every batch index, got ", given.shape().str());
  const auto values = given.to_vector<std::int32_t>();
  for (std::size_t b = 0; b < values.size(); ++b) {
    const std::int32_t expect = b < counts.size() ? counts[b] : 0;
    check(values[b] == expect, k_op, "batch_counts", "entry ", b, " is ", values[b], " but the batch column has ",
          expect, " rows");
  }
  return given;
}

}  // namespace

SparseTensor SparseTensor::from_coords(Array coords, Array feats, const SparseTensorOptions& options) {
  check(coords.defined(), k_op, "coords", "undefined array");
  check(feats.defined(), k_op, "feats", "undefined array");
  check<TypeError>(coords.dtype() == DType::i32, k_op, "coords", "must be int32, got ", dtype_name(coords.dtype()));
  check(coords.ndim() == 2 && coords.dim(1) == 4, k_op, "coords", "must have shape (N, 4) rows (batch, x, y, z), got ",
        coords.shape().str());
  check<TypeError>(is_floating(feats.dtype()), k_op, "feats", "must be a floating dtype, got ",
                   dtype_name(feats.dtype()));
  check(feats.ndim() == 2, k_op, "feats", "must have shape (N, C), got ", feats.shape().str());
  check(feats.dim(0) == coords.dim(0), k_op, "feats", "has ", feats.dim(0), " rows but coords has ", coords.dim(0));
  check<DeviceError>(feats.device() == coords.device(), k_op, "feats", "is on ", feats.device().str(),
                     " but coords is on ", coords.device().str());
  const Int3 s = options.stride;
  check(s.x >= 1 && s.y >= 1 && s.z >= 1, k_op, "stride", "must be positive, got ", s.str());
  const std::int64_t capacity = coords.dim(0);
  const std::int64_t rows = options.active_rows.value_or(capacity);
  check(rows >= 0 && rows <= capacity, k_op, "active_rows", rows, " is outside [0, ", capacity, "]");

  auto manager = options.manager ? options.manager : CoordinateManager::default_manager();
  if (coords.device().is_cpu()) {
    // Host data is checked on the host, before it can reach a device (SPEC §14).
    std::vector<std::int32_t> counts = check_coordinate_values(coords, rows, s);
    std::optional<Array> batch_counts = checked_batch_counts(options.batch_counts, counts, coords.device());
    auto set =
        manager->insert(std::move(coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), Device::cpu()),
                        s, std::move(batch_counts), rows);
    if (options.check_unique) cpu::coord_index(*set, k_op);  // throws on duplicates; kept for later relations
    return SparseTensor(std::move(set), std::move(manager), std::move(feats));
  }
  // Device data is checked by kernels; errors surface at the next host-facing
  // call (sticky device errors), so construction never waits for the device.
  check(!options.batch_counts.has_value() || options.batch_counts->device() == coords.device(), k_op, "batch_counts",
        "must be on ", coords.device().str());
  auto set =
      manager->insert(std::move(coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), feats.device()),
                      s, options.batch_counts, rows);
  cuda::check_coordinates(*set, k_op);
  if (options.check_unique) cuda::check_unique(*set, k_op);
  return SparseTensor(std::move(set), std::move(manager), std::move(feats));
}

SparseTensor::SparseTensor(std::shared_ptr<const CoordinateSet> coords, std::shared_ptr<CoordinateManager> manager,
                           Array feats)
    : coords_(std::move(coords)), manager_(std::move(manager)), feats_(std::move(feats)) {
  check(coords_ != nullptr, k_op, "coords", "no coordinate set");
  check(manager_ != nullptr, k_op, "manager", "no manager");
  check(feats_.defined() && feats_.ndim() == 2, k_op, "feats", "must have shape (capacity, C), got ",
        feats_.defined() ? feats_.shape().str() : "undefined");
  check(feats_.dim(0) == coords_->capacity(), k_op, "feats", "has ", feats_.dim(0), " rows but the coordinate set has ",
        coords_->capacity());
  check<DeviceError>(feats_.device() == coords_->device(), k_op, "feats", "is on ", feats_.device().str(),
                     " but the coordinates are on ", coords_->device().str());
}

SparseTensor SparseTensor::replace_feats(Array feats) const {
  return SparseTensor(coords_, manager_, std::move(feats));
}

SparseTensor SparseTensor::to(Device device) const {
  if (device == this->device()) return *this;
  auto set = manager_->insert(coords().to(device), active_rows().to(device), stride(),
                              batch_counts() ? std::optional<Array>(batch_counts()->to(device)) : std::nullopt,
                              coords_->known_rows());
  return SparseTensor(std::move(set), manager_, feats_.to(device));
}

}  // namespace lattice
