// Sparse algebra front ends: check -> align the two coordinate sets (row maps)
// -> one elementwise pass through the maps (SPEC §7, Appendix A).
#include "lattice/ops/algebra.hpp"

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"

namespace lattice::ops {

namespace detail {

// Two tensors whose coordinate sets are compared by value: same manager,
// device and stride (shared with coordinate_sets.cpp).
void check_set_pair(const SparseTensor& a, const SparseTensor& b, const char* op, const char* a_name,
                    const char* b_name) {
  check_input(a, op, a_name);
  check_input(b, op, b_name);
  check<DeviceError>(a.device() == b.device(), op, b_name, "is on ", b.device().str(), " but ", a_name, " is on ",
                     a.device().str());
  check(a.manager() == b.manager(), op, b_name, "belongs to coordinate manager ", b.key().manager_id, " but ", a_name,
        " to manager ", a.key().manager_id, "; sets of different managers cannot be combined");
  check(a.stride() == b.stride(), op, b_name, "stride ", b.stride().str(), " differs from ", a_name, "'s stride ",
        a.stride().str());
}

// A coordinate-only tensor (0 feature channels) over `set`.
SparseTensor coordinate_tensor(std::shared_ptr<const CoordinateSet> set, const std::shared_ptr<CoordinateManager>& m,
                               DType dtype) {
  Array feats = Array::empty(Shape{set->capacity(), 0}, dtype, set->device());
  return SparseTensor(std::move(set), m, std::move(feats));
}

}  // namespace detail

std::string_view binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add:
      return "add";
    case BinaryOp::sub:
      return "sub";
    case BinaryOp::mul:
      return "mul";
    case BinaryOp::maximum:
      return "maximum";
    case BinaryOp::minimum:
      return "minimum";
  }
  return "?";
}

std::string_view join_name(Join join) {
  switch (join) {
    case Join::inner:
      return "inner";
    case Join::outer:
      return "outer";
    case Join::left:
      return "left";
  }
  return "?";
}

Join default_join(BinaryOp op) { return op == BinaryOp::add || op == BinaryOp::sub ? Join::outer : Join::inner; }

namespace {

void check_op(BinaryOp op, const char* name) {
  check(static_cast<int>(op) <= static_cast<int>(BinaryOp::minimum), name, "op", "unknown binary op ",
        static_cast<int>(op), " (expected add, sub, mul, maximum or minimum)");
}

void check_join(Join join, const char* name) {
  check(static_cast<int>(join) <= static_cast<int>(Join::left), name, "join", "unknown join ", static_cast<int>(join),
        " (expected inner, outer or left)");
}

// Identity row map over `set`: row r -> r for active rows, -1 beyond.
Array identity_rows(const SparseTensor& x) {
  const std::int64_t cap = x.capacity();
  if (x.device().is_cpu()) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(cap), -1);
    const std::int64_t rows = x.rows();
    for (std::int64_t r = 0; r < rows; ++r) v[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r);
    return Array::from_vector(v, Shape{cap}, Device::cpu());
  }
  return cuda::identity_rows(*x.coordinate_set());  // bounded by the device count: no host read
}

// Unchecked alignment (callers check).
AlignedRows align_unchecked(const SparseTensor& lhs, const SparseTensor& rhs, Join join, const char* op) {
  if (lhs.key() == rhs.key()) {
    Array rows = identity_rows(lhs);
    return {detail::coordinate_tensor(lhs.coordinate_set(), lhs.manager(), lhs.dtype()), rows, rows};
  }
  const auto& m = lhs.manager();
  std::shared_ptr<const CoordinateSet> set;
  Array lhs_rows, rhs_rows;
  if (lhs.device().is_cpu()) {
    cpu::AlignParts p = cpu::align(*lhs.coordinate_set(), *rhs.coordinate_set(), join, op);
    if (join == Join::left) {
      set = lhs.coordinate_set();
    } else {
      set = m->insert(std::move(p.set.coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(p.set.rows)),
                      lhs.stride(), std::move(p.set.batch_counts), p.set.rows);
    }
    lhs_rows = std::move(p.lhs_rows);
    rhs_rows = std::move(p.rhs_rows);
  } else {
    cuda::AlignParts p = cuda::align(*lhs.coordinate_set(), *rhs.coordinate_set(), join, op);
    set = join == Join::left ? lhs.coordinate_set()
                             : m->insert(std::move(p.set.coords), std::move(p.set.active_rows), lhs.stride());
    lhs_rows = std::move(p.lhs_rows);
    rhs_rows = std::move(p.rhs_rows);
  }
  return {detail::coordinate_tensor(std::move(set), m, lhs.dtype()), std::move(lhs_rows), std::move(rhs_rows)};
}

}  // namespace

SparseTensor sparse_binary(BinaryOp op, const SparseTensor& lhs, const SparseTensor& rhs, const BinaryParams& params) {
  constexpr const char* name = "sparse_binary";
  check_op(op, name);
  const Join join = params.join.value_or(default_join(op));
  check_join(join, name);
  detail::check_set_pair(lhs, rhs, name, "lhs", "rhs");
  check<TypeError>(lhs.dtype() == rhs.dtype(), name, "rhs", "dtype ", dtype_name(rhs.dtype()), " differs from lhs's ",
                   dtype_name(lhs.dtype()));
  check(lhs.channels() == rhs.channels(), name, "rhs", "has ", rhs.channels(), " channels but lhs has ",
        lhs.channels());

  detail::OpTrace trace(lhs.device());
  const auto finish = [&](SparseTensor y, std::string_view route) {
    OpRecord r;
    r.op = name;
    r.route = route;
    r.channels_in = r.channels_out = lhs.channels();
    trace.record(std::move(r), lhs.coordinate_set(), y.coordinate_set(), nullptr, false);
    return y;
  };
  if (lhs.key() == rhs.key()) {
    // Row-aligned by construction: join and fills do not apply (Appendix A).
    Array out = Array::empty(lhs.feats().shape(), lhs.dtype(), lhs.device());
    if (lhs.device().is_cpu()) {
      cpu::binary_rows(lhs.feats(), rhs.feats(), std::nullopt, std::nullopt, lhs.rows(), op, 0.0, 0.0, out);
    } else {
      cuda::binary_rows(lhs.feats(), rhs.feats(), std::nullopt, std::nullopt, lhs.active_rows(), op, 0.0, 0.0, out);
    }
    return finish(lhs.replace_feats(std::move(out)), "same_key");
  }
  AlignedRows a = align_unchecked(lhs, rhs, join, name);
  trace.relation_done(false);
  Array out = Array::empty(Shape{a.coords.capacity(), lhs.channels()}, lhs.dtype(), lhs.device());
  if (lhs.device().is_cpu()) {
    cpu::binary_rows(lhs.feats(), rhs.feats(), a.lhs_rows, a.rhs_rows, a.coords.rows(), op, params.lhs_fill,
                     params.rhs_fill, out);
  } else {
    cuda::binary_rows(lhs.feats(), rhs.feats(), a.lhs_rows, a.rhs_rows, a.coords.active_rows(), op, params.lhs_fill,
                      params.rhs_fill, out);
  }
  return finish(a.coords.replace_feats(std::move(out)), join_name(join));
}

AlignedRows align_sparse(const SparseTensor& lhs, const SparseTensor& rhs, Join join) {
  constexpr const char* name = "align_sparse";
  check_join(join, name);
  detail::check_set_pair(lhs, rhs, name, "lhs", "rhs");
  return align_unchecked(lhs, rhs, join, name);
}

Array gather_aligned_features(const SparseTensor& x, const Array& rows, double fill) {
  constexpr const char* name = "gather_aligned_features";
  detail::check_input(x, name);
  check(rows.defined(), name, "rows", "undefined array");
  check<TypeError>(rows.dtype() == DType::i32, name, "rows", "must be int32, got ", dtype_name(rows.dtype()));
  check(rows.ndim() == 1, name, "rows", "must be 1-D, got shape ", rows.shape().str());
  check<DeviceError>(rows.device() == x.device(), name, "rows", "is on ", rows.device().str(), " but x is on ",
                     x.device().str());
  Array out = Array::empty(Shape{rows.dim(0), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    const std::int64_t n = x.rows();
    const std::int32_t* r = rows.data<std::int32_t>();
    for (std::int64_t i = 0; i < rows.dim(0); ++i) {
      check(r[i] >= -1 && r[i] < n, name, "rows", "entry ", i, " is ", r[i], ", outside [-1, ", n, ")");
    }
    cpu::gather_rows(x.feats(), rows, fill, out);
  } else {
    cuda::gather_rows(x.feats(), x.active_rows(), rows, fill, out, name);
  }
  return out;
}

SparseTensor reindex_sparse(const SparseTensor& x, const SparseTensor& target, double fill) {
  constexpr const char* name = "reindex_sparse";
  detail::check_set_pair(x, target, name, "x", "target");
  if (x.key() == target.key()) return x;
  Array out = Array::empty(Shape{target.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    Array rows = cpu::match_rows(*x.coordinate_set(), *target.coordinate_set(), name);
    cpu::gather_rows(x.feats(), rows, fill, out);
  } else {
    Array rows = cuda::match_rows(*x.coordinate_set(), *target.coordinate_set(), name);
    cuda::gather_rows(x.feats(), x.active_rows(), rows, fill, out, name);
  }
  return target.replace_feats(std::move(out));
}

}  // namespace lattice::ops

namespace lattice {

SparseTensor operator+(const SparseTensor& lhs, const SparseTensor& rhs) {
  return ops::sparse_binary(ops::BinaryOp::add, lhs, rhs);
}
SparseTensor operator-(const SparseTensor& lhs, const SparseTensor& rhs) {
  return ops::sparse_binary(ops::BinaryOp::sub, lhs, rhs);
}
SparseTensor operator*(const SparseTensor& lhs, const SparseTensor& rhs) {
  return ops::sparse_binary(ops::BinaryOp::mul, lhs, rhs);
}

}  // namespace lattice
