// Memory-bound op families on the real scan: pooling and resampling. These move
// bytes rather than FLOPs, so each case reports floor_ratio = (minimum bytes /
// copy bandwidth) / time; the minimum bytes are stated beside each case (read
// every input feature once, write every output once, read one int32 row index
// per relation edge). Relations are cached (built before timing), as in a
// network's steady state.
#include <string>

#include "gpu_harness.hpp"
#include "lattice/ops/resample.hpp"

namespace lattice::bench {

namespace {

struct Case {
  const Ceilings& ceil;
  int runs;
  std::vector<Row>& rows;

  void add(const std::string& name, DType dtype, double bytes, std::int64_t in, std::int64_t out, std::int64_t edges,
           const std::string& note, const std::function<void()>& f) const {
    const Timing t = time_it(f, runs);
    Row r = make_row(name, dtype, false, 0, bytes, t, ceil);
    r.voxels_in = in;
    r.voxels_out = out;
    r.edges = edges;
    r.note = note;
    rows.push_back(r);
  }
};

// Edges of the relation the last traced op used.
OpRecord traced(const std::function<void()>& f) {
  TraceSession trace;
  f();
  return trace.records().back();
}

void pooling_cases(const BenchInput& in, const Case& c) {
  for (DType dtype : {DType::f16, DType::f32}) {
    const int ch = 64;
    const double item = static_cast<double>(itemsize(dtype));
    const SparseTensor x = fresh(in.coords, Array::full(Shape{in.voxels, ch}, dtype, 0.5, k_dev), in.voxels);
    for (ops::PoolMode mode : {ops::PoolMode::max, ops::PoolMode::avg}) {
      const std::string name = std::string(ops::pool_mode_name(mode)) + "_pool3d k2 s2 C=64";
      const OpRecord rec = traced([&] { ops::pool3d(x, mode); });
      const double bytes = item * ch * static_cast<double>(in.voxels + rec.rows_out) + 4.0 * rec.edges;
      c.add(name, dtype, bytes, in.voxels, rec.rows_out, rec.edges, "cached relation", [&] { ops::pool3d(x, mode); });
    }
    // Back onto the fine support (the voxelized set): through the transposed
    // relation, and by trilinear interpolation (up to 8 coarse rows per fine row).
    const SparseTensor coarse = ops::max_pool3d(x);
    const std::int64_t nc = coarse.rows();
    const OpRecord pt = traced([&] { ops::pool_transpose3d(coarse, {.target = x}); });
    c.add("pool_transpose3d k2 s2 C=64 (target)", dtype,
          item * ch * static_cast<double>(nc + in.voxels) + 4.0 * pt.edges, nc, in.voxels, pt.edges, "cached relation",
          [&] { ops::pool_transpose3d(coarse, {.target = x}); });
    c.add("trilinear_upsample3d r=2 C=64 (target)", dtype, item * ch * static_cast<double>(nc + in.voxels), nc,
          in.voxels, 0, "hash lookups per fine row", [&] { ops::trilinear_upsample3d(coarse, {.target = x}); });
    const double gbytes = item * ch * static_cast<double>(in.voxels) + 16.0 * in.voxels;
    c.add("global_pool avg C=64", dtype, gbytes, in.voxels, 1, 0, "batch_size given",
          [&] { ops::global_pool(x, ops::PoolMode::avg, 1); });
  }
}

}  // namespace

void op_cases(const BenchInput& in, const Ceilings& ceil, int runs, std::vector<Row>& rows) {
  const Case c{ceil, runs, rows};
  pooling_cases(in, c);
}

}  // namespace lattice::bench
