// Coordinate-set front ends: check -> backend -> register the new set (SPEC §7).
#include "lattice/ops/coordinate_sets.hpp"

#include <limits>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/ops/algebra.hpp"
#include "ops/common.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace detail {
// Defined in algebra.cpp.
void check_set_pair(const SparseTensor& a, const SparseTensor& b, const char* op, const char* a_name,
                    const char* b_name);
SparseTensor coordinate_tensor(std::shared_ptr<const CoordinateSet> set, const std::shared_ptr<CoordinateManager>& m,
                               DType dtype);
}  // namespace detail

namespace {

// (M, 4) int32 coordinates on `device`.
void check_coords(const Array& coords, Device device, const char* op) {
  check(coords.defined(), op, "coords", "undefined array");
  check<TypeError>(coords.dtype() == DType::i32, op, "coords", "must be int32, got ", dtype_name(coords.dtype()));
  check(coords.ndim() == 2 && coords.dim(1) == 4, op, "coords", "must have shape (M, 4) rows (batch, x, y, z), got ",
        coords.shape().str());
  check<DeviceError>(coords.device() == device, op, "coords", "is on ", coords.device().str(), " but x is on ",
                     device.str());
}

// Host check of Morton ranges (Appendix A): batch in [0, 1024), divisible, logical in the 18-bit range.
void check_morton_values(const Array& coords, std::int64_t rows, Int3 stride, const char* op) {
  const std::int32_t* c = coords.data<std::int32_t>();
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int32_t* r = c + 4 * i;
    check(r[0] >= 0 && r[0] < 1024, op, "coords", "row ", i, " has batch index ", r[0],
          ", outside the Morton range [0, 1023]");
    for (int a = 0; a < 3; ++a) {
      const std::int32_t v = r[a + 1];
      check(v % stride[a] == 0, op, "coords", "row ", i, " coordinate ", v, " on axis ", "xyz"[a],
            " is not divisible by the stride ", stride.str());
      check(lattice::detail::axis_fits(v / stride[a]), op, "coords", "row ", i, " coordinate ", v, " on axis ",
            "xyz"[a], " (logical ", v / stride[a], ") is outside the Morton range [", lattice::detail::k_axis_min, ", ",
            lattice::detail::k_axis_max, "]");
    }
  }
}

SparseTensor register_cpu(const SparseTensor& like, cpu::SetParts p, Int3 stride) {
  auto set = like.manager()->insert(std::move(p.coords),
                                    Array::scalar<std::int32_t>(static_cast<std::int32_t>(p.rows), Device::cpu()),
                                    stride, std::move(p.batch_counts), p.rows);
  return detail::coordinate_tensor(std::move(set), like.manager(), like.dtype());
}

SparseTensor register_cuda(const SparseTensor& like, cuda::SetParts p, Int3 stride) {
  auto set = like.manager()->insert(std::move(p.coords), std::move(p.active_rows), stride);
  return detail::coordinate_tensor(std::move(set), like.manager(), like.dtype());
}

}  // namespace

SparseTensor downsample_coords(const SparseTensor& x, Int3 stride) {
  constexpr const char* op = "downsample_coords";
  detail::check_input(x, op);
  check(stride.x >= 1 && stride.y >= 1 && stride.z >= 1, op, "stride", "must be positive, got ", stride.str());
  Int3 out_stride{1};
  for (int a = 0; a < 3; ++a) {
    const std::int64_t s = std::int64_t{x.stride()[a]} * stride[a];
    check(s <= (1 << 24), op, "stride", "output stride ", s, " on axis ", "xyz"[a], " is too large (", x.stride().str(),
          " * ", stride.str(), ")");
    out_stride[a] = static_cast<std::int32_t>(s);
  }
  if (x.device().is_cpu()) return register_cpu(x, cpu::downsample(*x.coordinate_set(), out_stride, op), out_stride);
  return register_cuda(x, cuda::downsample(*x.coordinate_set(), out_stride, op), out_stride);
}

SparseTensor union_coords(const SparseTensor& a, const SparseTensor& b) {
  constexpr const char* op = "union_coords";
  detail::check_set_pair(a, b, op, "a", "b");
  return align_sparse(a, b, Join::outer).coords;
}

SparseTensor intersection_coords(const SparseTensor& a, const SparseTensor& b) {
  constexpr const char* op = "intersection_coords";
  detail::check_set_pair(a, b, op, "a", "b");
  return align_sparse(a, b, Join::inner).coords;
}

Array lookup_coords(const SparseTensor& x, const Array& coords) {
  constexpr const char* op = "lookup_coords";
  detail::check_input(x, op);
  check_coords(coords, x.device(), op);
  if (x.device().is_cpu()) return cpu::lookup(*x.coordinate_set(), coords, op);
  return cuda::lookup(*x.coordinate_set(), coords, op);
}

Array contains_coords(const SparseTensor& x, const Array& coords) {
  constexpr const char* op = "contains_coords";
  detail::check_input(x, op);
  check_coords(coords, x.device(), op);
  if (x.device().is_cpu()) {
    const Array rows = cpu::lookup(*x.coordinate_set(), coords, op);
    Array mask = Array::empty(Shape{rows.dim(0)}, DType::u8, Device::cpu());
    const std::int32_t* r = rows.data<std::int32_t>();
    std::uint8_t* m = mask.data<std::uint8_t>();
    for (std::int64_t i = 0; i < rows.dim(0); ++i) m[i] = r[i] >= 0 ? 1 : 0;
    return mask;
  }
  return cuda::contains(*x.coordinate_set(), coords, op);
}

Array inverse_map(const SparseTensor& fine, const SparseTensor& coarse) {
  constexpr const char* op = "inverse_map";
  detail::check_input(fine, op, "fine");
  detail::check_input(coarse, op, "coarse");
  check<DeviceError>(fine.device() == coarse.device(), op, "coarse", "is on ", coarse.device().str(),
                     " but fine is on ", fine.device().str());
  check(fine.manager() == coarse.manager(), op, "coarse", "belongs to coordinate manager ", coarse.key().manager_id,
        " but fine to manager ", fine.key().manager_id);
  for (int a = 0; a < 3; ++a) {
    check(coarse.stride()[a] % fine.stride()[a] == 0, op, "coarse", "stride ", coarse.stride().str(),
          " is not a multiple of fine's stride ", fine.stride().str());
  }
  if (fine.device().is_cpu()) return cpu::match_rows(*coarse.coordinate_set(), *fine.coordinate_set(), op);
  return cuda::match_rows(*coarse.coordinate_set(), *fine.coordinate_set(), op);
}

Array morton_codes(const Array& coords, Int3 stride) {
  constexpr const char* op = "morton_codes";
  check_coords(coords, coords.defined() ? coords.device() : Device::cpu(), op);
  check(stride.x >= 1 && stride.y >= 1 && stride.z >= 1, op, "stride", "must be positive, got ", stride.str());
  if (coords.device().is_cpu()) {
    check_morton_values(coords, coords.dim(0), stride, op);
    return cpu::morton_codes(coords, coords.dim(0), stride);
  }
  return cuda::morton_codes(coords, std::nullopt, stride, op);
}

// A tensor's coordinates are unique, divisible and inside the key range
// (batch <= 1022), so they always fit the Morton range: no value checks.
Array morton_codes(const SparseTensor& x) {
  constexpr const char* op = "morton_codes";
  detail::check_input(x, op);
  if (x.device().is_cpu()) return cpu::morton_codes(x.coords(), x.rows(), x.stride());
  return cuda::morton_codes(x.coords(), x.active_rows(), x.stride(), op);
}

Array morton_order(const SparseTensor& x) {
  constexpr const char* op = "morton_order";
  detail::check_input(x, op);
  if (x.device().is_cpu()) return cpu::morton_order(cpu::morton_codes(x.coords(), x.rows(), x.stride()));
  return cuda::morton_order(cuda::morton_codes(x.coords(), x.active_rows(), x.stride(), op));
}

SparseTensor morton_sort_coords(const SparseTensor& x) {
  constexpr const char* op = "morton_sort_coords";
  detail::check_input(x, op);
  Array coords = Array::empty(x.coords().shape(), DType::i32, x.device());
  Array feats = Array::empty(x.feats().shape(), x.dtype(), x.device());
  std::shared_ptr<const CoordinateSet> set;
  if (x.device().is_cpu()) {
    const Array perm = cpu::morton_order(cpu::morton_codes(x.coords(), x.rows(), x.stride()));
    cpu::permute_rows(x.coords(), perm, coords);
    cpu::permute_rows(x.feats(), perm, feats);
    // Same rows, so the same batch_counts.
    set = x.manager()->insert(std::move(coords), x.active_rows().clone(), x.stride(), x.batch_counts(), x.rows());
  } else {
    const Array perm = cuda::morton_order(cuda::morton_codes(x.coords(), x.active_rows(), x.stride(), op));
    cuda::permute_rows(x.coords(), perm, coords);
    cuda::permute_rows(x.feats(), perm, feats);
    set = x.manager()->insert(std::move(coords), x.active_rows().clone(), x.stride(), x.batch_counts(),
                              x.coordinate_set()->known_rows());
  }
  return SparseTensor(std::move(set), x.manager(), std::move(feats));
}

}  // namespace lattice::ops
