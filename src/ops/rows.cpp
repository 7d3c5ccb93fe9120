// Row-selection front ends (SPEC §7, Appendix A "Row selection"): check every
// argument (host data on the host), select on the backend, register the subset
// as a new coordinate key in x's manager.
#include "lattice/ops/rows.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/api_rows.hpp"
#include "backend/cuda/api_rows.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"

namespace lattice::ops {

namespace {

bool is_index_dtype(DType t) { return t == DType::i32 || t == DType::i64; }

// A defined 1-D integer array (dtypes as listed in `expected`).
void check_vector_arg(const Array& a, const char* op, const char* arg, bool allow_u8) {
  check(a.defined(), op, arg, "undefined array");
  check<TypeError>(is_index_dtype(a.dtype()) || (allow_u8 && a.dtype() == DType::u8), op, arg, "must be ",
                   allow_u8 ? "uint8, int32 or int64" : "int32 or int64", ", got ", dtype_name(a.dtype()));
  check(a.ndim() == 1, op, arg, "must be 1-D, got shape ", a.shape().str());
}

void check_on_device(const Array& a, Device device, const char* op, const char* arg) {
  check<DeviceError>(a.device() == device, op, arg, "is on ", a.device().str(), " but x is on ", device.str());
}

// Registers a subset as a new key in x's manager (same stride).
SparseTensor cpu_output(const SparseTensor& x, cpu::RowSubset s) {
  const std::int64_t m = s.coords.dim(0);
  auto set =
      x.manager()->insert(std::move(s.coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(m), Device::cpu()),
                          x.stride(), std::move(s.batch_counts), m);
  return SparseTensor(std::move(set), x.manager(), std::move(s.feats));
}

SparseTensor cuda_output(const SparseTensor& x, cuda::RowSubset s, std::optional<std::int64_t> known_rows) {
  auto set = x.manager()->insert(std::move(s.coords), std::move(s.active_rows), x.stride(), std::nullopt, known_rows);
  return SparseTensor(std::move(set), x.manager(), std::move(s.feats));
}

SparseTensor traced(detail::OpTrace& trace, const SparseTensor& x, SparseTensor out, const char* op) {
  OpRecord r;
  r.op = op;
  r.route = x.device().is_cpu() ? "cpu" : "cuda";
  r.channels_in = r.channels_out = out.channels();
  trace.record(std::move(r), x.coordinate_set(), out.coordinate_set(), nullptr, false);
  return out;
}

}  // namespace

SparseTensor prune(const SparseTensor& x, const Array& rows) {
  constexpr const char* op = "prune";
  detail::check_input(x, op);
  check_vector_arg(rows, op, "rows", false);
  check_on_device(rows, x.device(), op, "rows");
  const std::int64_t m = rows.dim(0);
  check(m <= std::numeric_limits<std::int32_t>::max(), op, "rows", m, " entries exceed int32 row counts");
  detail::OpTrace trace(x.device());
  if (x.device().is_cpu()) {
    const std::int64_t n = x.rows();
    const std::vector<std::int64_t> v = cpu::integer_values(rows);
    std::vector<std::int64_t> first(static_cast<std::size_t>(n), -1);  // position that selected each row
    for (std::int64_t j = 0; j < m; ++j) {
      const std::int64_t r = v[static_cast<std::size_t>(j)];
      check(r >= 0 && r < n, op, "rows", "entry ", j, " is ", r, ", outside [0, ", n, ")");
      auto& seen = first[static_cast<std::size_t>(r)];
      check(seen < 0, op, "rows", "entries ", seen, " and ", j, " both select row ", r,
            "; rows must be unique (a repeated row would repeat its coordinate)");
      seen = j;
    }
    return traced(trace, x, cpu_output(x, cpu::gather_rows(x.coords(), x.feats(), v)), op);
  }
  return traced(trace, x, cuda_output(x, cuda::prune_rows(*x.coordinate_set(), x.feats(), rows, op), m), op);
}

SparseTensor prune_mask(const SparseTensor& x, const Array& mask) {
  constexpr const char* op = "prune_mask";
  detail::check_input(x, op);
  check_vector_arg(mask, op, "mask", true);
  check_on_device(mask, x.device(), op, "mask");
  const std::int64_t len = mask.dim(0);
  const std::int64_t cap = x.capacity();
  detail::OpTrace trace(x.device());
  if (x.device().is_cpu()) {
    const std::int64_t n = x.rows();
    check(len == n || len == cap, op, "mask", "has ", len, " entries but x has ", n, " active rows");
    return traced(trace, x, cpu_output(x, cpu::gather_rows(x.coords(), x.feats(), cpu::mask_rows(mask, n))), op);
  }
  // A capacity-long mask needs no count; otherwise compare with the count the
  // host knows, or else on the device (sticky error).
  bool check_on_gpu = false;
  if (len != cap) {
    if (const auto known = x.coordinate_set()->known_rows()) {
      check(len == *known, op, "mask", "has ", len, " entries but x has ", *known, " active rows");
    } else {
      check(len < cap, op, "mask", "has ", len, " entries, more than x's capacity ", cap);
      check_on_gpu = true;
    }
  }
  return traced(trace, x,
                cuda_output(x, cuda::mask_rows(*x.coordinate_set(), x.feats(), mask, check_on_gpu, op), std::nullopt),
                op);
}

SparseTensor crop(const SparseTensor& x, Int3 min_coord, Int3 max_coord) {
  constexpr const char* op = "crop";
  detail::check_input(x, op);
  for (int a = 0; a < 3; ++a) {
    check(min_coord[a] <= max_coord[a], op, "max_coord", max_coord.str(), " is below min_coord ", min_coord.str(),
          " on axis ", "xyz"[a]);
  }
  detail::OpTrace trace(x.device());
  if (x.device().is_cpu()) {
    const auto rows = cpu::crop_rows(x.coords(), x.rows(), min_coord, max_coord);
    return traced(trace, x, cpu_output(x, cpu::gather_rows(x.coords(), x.feats(), rows)), op);
  }
  return traced(trace, x,
                cuda_output(x, cuda::crop_rows(*x.coordinate_set(), x.feats(), min_coord, max_coord), std::nullopt),
                op);
}

SparseTensor topk_rows(const SparseTensor& x, const Array& counts, double rho) {
  constexpr const char* op = "topk_rows";
  detail::check_input(x, op);
  check_vector_arg(counts, op, "counts", false);
  check<DeviceError>(counts.device().is_cpu() || counts.device() == x.device(), op, "counts", "is on ",
                     counts.device().str(), " but x is on ", x.device().str(), " (host counts are accepted too)");
  check(std::isfinite(rho) && rho >= 0, op, "rho", "must be finite and >= 0, got ", rho);
  check(x.channels() >= 1, op, "x", "has no feature channel to score rows by");
  const std::int64_t num_counts = counts.dim(0);
  // Host counts are checked on the host, before any upload.
  std::vector<std::int64_t> host_counts;
  if (counts.device().is_cpu()) {
    host_counts = cpu::integer_values(counts);
    for (std::int64_t b = 0; b < num_counts; ++b) {
      const std::int64_t c = host_counts[static_cast<std::size_t>(b)];
      check(c >= 0, op, "counts", "entry ", b, " is ", c, ", must be >= 0");
    }
  }
  detail::OpTrace trace(x.device());
  if (x.device().is_cpu()) {
    const std::int64_t n = x.rows();
    const std::int32_t* c = x.coords().data<std::int32_t>();
    std::vector<std::int64_t> rows_b;
    for (std::int64_t r = 0; r < n; ++r) {
      const std::int32_t b = c[4 * r];
      check(b < num_counts, op, "counts", "has ", num_counts, " entries but row ", r, " has batch index ", b);
      if (static_cast<std::size_t>(b) >= rows_b.size()) rows_b.resize(static_cast<std::size_t>(b) + 1, 0);
      ++rows_b[static_cast<std::size_t>(b)];
    }
    const std::int64_t nan_row = cpu::first_nan_score(x.feats(), n);
    check(nan_row < 0, op, "x", "row ", nan_row, " has a NaN score (first feature channel)");
    std::vector<std::int64_t> k(rows_b.size());
    for (std::size_t b = 0; b < k.size(); ++b) {
      // floor(counts_b * rho) in float64, clamped to the rows present.
      const double want = std::floor(static_cast<double>(host_counts[b]) * rho);
      k[b] = want >= static_cast<double>(rows_b[b]) ? rows_b[b] : static_cast<std::int64_t>(want);
    }
    const auto rows = cpu::topk_rows(x.coords(), x.feats(), n, k);
    return traced(trace, x, cpu_output(x, cpu::gather_rows(x.coords(), x.feats(), rows)), op);
  }
  // Host counts travel to the device (one small upload); device counts stay there.
  const Array device_counts = counts.to(x.device());
  return traced(trace, x,
                cuda_output(x, cuda::topk_rows(*x.coordinate_set(), x.feats(), device_counts, rho, op), std::nullopt),
                op);
}

SparseTensor replace_feature(const SparseTensor& x, const Array& feats) {
  constexpr const char* op = "replace_feature";
  check(x.defined(), op, "x", "undefined sparse tensor");
  check(feats.defined(), op, "feats", "undefined array");
  check<TypeError>(is_floating(feats.dtype()), op, "feats", "must be floating, got ", dtype_name(feats.dtype()));
  check(feats.ndim() == 2, op, "feats", "must have shape (rows, C), got ", feats.shape().str());
  check_on_device(feats, x.device(), op, "feats");
  const std::int64_t r = feats.dim(0);
  const std::int64_t cap = x.capacity();
  // Same key: identical coordinates must not get a second key, which would
  // defeat the relation cache (SPEC §1, feature ops keep identity).
  if (r == cap) return x.replace_feats(feats);
  if (r > cap) return x.replace_feats(feats.rows(0, cap));
  const std::int64_t n = x.rows();  // host-facing on CUDA unless the host knows the count
  check(r >= n, op, "feats", "has ", r, " rows but x has ", n, " active rows");
  Array out = Array::zeros(Shape{cap, feats.dim(1)}, feats.dtype(), x.device());
  if (feats.nbytes() > 0) copy_bytes(out.raw(), out.device(), feats.raw(), feats.device(), feats.nbytes());
  return x.replace_feats(std::move(out));
}

}  // namespace lattice::ops
