// Pooling front ends: check -> forward relation (shared with conv3d's cache) -> backend.
#include "lattice/ops/pooling.hpp"

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "relation/build.hpp"

namespace lattice::ops {

std::string_view pool_mode_name(PoolMode mode) {
  switch (mode) {
    case PoolMode::sum:
      return "sum";
    case PoolMode::max:
      return "max";
    case PoolMode::avg:
      return "avg";
  }
  return "?";
}

namespace {

void check_mode(PoolMode mode, const char* op) {
  check(mode == PoolMode::sum || mode == PoolMode::max || mode == PoolMode::avg, op, "mode", "unknown pooling mode ",
        static_cast<int>(mode), " (expected sum, max or avg)");
}

SparseTensor run_pool(const SparseTensor& x, PoolMode mode, const Pool3dParams& params, const char* op) {
  detail::check_input(x, op);
  check_mode(mode, op);
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  validate_kernel_spec(spec, op);
  lattice::detail::output_stride(RelationKind::forward, x.stride(), spec.stride, op);
  detail::OpTrace trace(x.device());
  bool cached = false;
  auto rel = x.manager()->relation(x.coordinate_set(), RelationKind::forward, spec, nullptr, op, &cached);
  trace.relation_done(cached);
  const auto output = rel->output();
  Array out = Array::empty(Shape{output->capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::pool(*rel, x.feats(), mode, out);
  } else {
    cuda::pool(*rel, x.feats(), mode, out);
  }
  OpRecord r;
  r.op = op;
  r.route = pool_mode_name(mode);
  r.channels_in = r.channels_out = x.channels();
  trace.record(std::move(r), x.coordinate_set(), output, rel, false);
  return SparseTensor(output, x.manager(), std::move(out));
}

}  // namespace

SparseTensor pool3d(const SparseTensor& x, PoolMode mode, const Pool3dParams& params) {
  return run_pool(x, mode, params, "pool3d");
}
SparseTensor sum_pool3d(const SparseTensor& x, const Pool3dParams& params) {
  return run_pool(x, PoolMode::sum, params, "sum_pool3d");
}
SparseTensor max_pool3d(const SparseTensor& x, const Pool3dParams& params) {
  return run_pool(x, PoolMode::max, params, "max_pool3d");
}
SparseTensor avg_pool3d(const SparseTensor& x, const Pool3dParams& params) {
  return run_pool(x, PoolMode::avg, params, "avg_pool3d");
}

Array global_pool(const SparseTensor& x, PoolMode mode, std::optional<std::int64_t> batch_size) {
  constexpr const char* op = "global_pool";
  detail::check_input(x, op);
  check_mode(mode, op);
  if (batch_size) {
    check(*batch_size >= 1 && *batch_size <= 1023, op, "batch_size", "must be in [1, 1023], got ", *batch_size);
  }
  if (x.device().is_cpu()) {
    const std::int64_t rows = x.rows();
    const std::int32_t* c = x.coords().data<std::int32_t>();
    std::int64_t largest = -1;
    for (std::int64_t r = 0; r < rows; ++r) largest = std::max<std::int64_t>(largest, c[4 * r]);
    const std::int64_t b = batch_size.value_or(largest + 1);
    check(b > largest, op, "batch_size", b, " is not larger than the largest batch index ", largest);
    check(b >= 1, op, "x", "has no rows; pass batch_size to pool an empty tensor");
    Array out = Array::empty(Shape{b, x.channels()}, x.dtype(), x.device());
    cpu::global_pool(x.coords(), rows, x.feats(), mode, out, op);
    return out;
  }
  // On CUDA the batch count lives on the device: without batch_size it is read once (host-facing).
  const std::int64_t b = batch_size ? *batch_size : cuda::max_batch(*x.coordinate_set()) + 1;
  check(b >= 1, op, "x", "has no rows; pass batch_size to pool an empty tensor");
  Array out = Array::empty(Shape{b, x.channels()}, x.dtype(), x.device());
  cuda::global_pool(*x.coordinate_set(), x.feats(), mode, out, op);
  return out;
}

}  // namespace lattice::ops
