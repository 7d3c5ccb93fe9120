// Memory-bound op families on the real scan: pooling, resampling, devoxelize,
// neighbour search, sparse algebra. These move
// bytes rather than FLOPs, so each case reports floor_ratio = (minimum bytes /
// copy bandwidth) / time; the minimum bytes are stated beside each case (read
// every input feature once, write every output once, read one int32 row index
// per relation edge). Relations are cached (built before timing), as in a
// network's steady state.
#include <string>

#include "gpu_harness.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/coordinate_sets.hpp"
#include "lattice/ops/neighbors.hpp"
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

// Voxels back to the scan's points (C = 64): trilinear over 8 corners, and
// nearest through voxelize's point -> voxel map.
void devoxelize_cases(const BenchInput& in, const Case& c) {
  const std::int64_t n = in.points.dim(0);
  for (DType dtype : {DType::f16, DType::f32}) {
    const int ch = 64;
    const double item = static_cast<double>(itemsize(dtype));
    const SparseTensor x = fresh(in.coords, Array::full(Shape{in.voxels, ch}, dtype, 0.5, k_dev), in.voxels);
    const ops::DevoxelizeParams linear{.voxel_size = 0.05};
    const ops::DevoxelizeParams nearest{.voxel_size = 0.05, .interpolation = ops::Interpolation::nearest};
    (void)ops::devoxelize(x, in.points, linear);  // builds the set's hash index once
    const double bytes = item * ch * static_cast<double>(in.voxels + n) + 12.0 * n;
    c.add("devoxelize linear C=64 -> points", dtype, bytes, in.voxels, n, 0, "8 hash lookups per point",
          [&] { ops::devoxelize(x, in.points, linear); });
    c.add("devoxelize nearest C=64 (point_voxel_map)", dtype, bytes - 12.0 * n + 4.0 * n, in.voxels, n, 0,
          "gather through the map", [&] { ops::devoxelize(x, in.points, nearest, in.inverse_rows); });
  }
}

// Neighbour relations over every point of the scan (query = source), and the
// gather that consumes them. Minimum bytes: read the points twice, write the
// relation (index + distance per neighbour).
void neighbor_cases(const BenchInput& in, const Case& c) {
  const std::int64_t n = in.points.dim(0);
  const ops::PointSet pts{in.points, std::nullopt};
  for (std::int64_t k : {8, 16, 32}) {
    c.add("knn k=" + std::to_string(k) + " (all points)", DType::f32, 24.0 * n + 8.0 * n * k, n, n, n * k,
          "grid search", [&] { ops::knn_relation(pts, pts, k); });
  }
  c.add("radius 0.2 m, max 32 (all points)", DType::f32, 24.0 * n + 8.0 * n * 32, n, n, n * 32, "grid search",
        [&] { ops::radius_relation(pts, pts, 0.2, 32); });
  const ops::NeighborRelation rel = ops::knn_relation(pts, pts, 16);
  const Array f = Array::full(Shape{n, 32}, DType::f16, 0.5, k_dev);
  c.add("gather_neighbor_features k=16 C=32", DType::f16, 2.0 * 32 * n * (16 + 1) + 4.0 * n * 16, n, n, n * 16, "",
        [&] { ops::gather_neighbor_features(f, rel); });
}

// Joins by coordinate value: x against the same coordinates in Morton order
// under another key (every row matches, in a different order).
void algebra_cases(const BenchInput& in, const Case& c) {
  for (DType dtype : {DType::f16, DType::f32}) {
    const int ch = 64;
    const double item = static_cast<double>(itemsize(dtype));
    const SparseTensor x = fresh(in.coords, Array::full(Shape{in.voxels, ch}, dtype, 0.5, k_dev), in.voxels);
    const SparseTensor y = ops::morton_sort_coords(x);
    const SparseTensor x2 = x.replace_feats(Array::full(Shape{x.capacity(), ch}, dtype, 0.25, k_dev));
    (void)ops::sparse_binary(ops::BinaryOp::add, x, y);  // builds both hash indices
    c.add("sparse_binary add, outer join C=64", dtype, item * ch * 3.0 * in.voxels + 32.0 * in.voxels, in.voxels,
          in.voxels, 0, "different keys: hash join", [&] { ops::sparse_binary(ops::BinaryOp::add, x, y); });
    c.add("add, same key C=64", dtype, item * ch * 3.0 * in.voxels, in.voxels, in.voxels, 0, "row-wise",
          [&] { ops::add(x, x2); });
  }
  const SparseTensor x = fresh(in.coords, Array::zeros(Shape{in.voxels, 1}, DType::f32, k_dev), in.voxels);
  c.add("morton_sort_coords (C=1)", DType::f32, 2.0 * 20.0 * in.voxels, in.voxels, in.voxels, 0, "CUB radix sort",
        [&] { ops::morton_sort_coords(x); });
}

}  // namespace

void op_cases(const BenchInput& in, const Ceilings& ceil, int runs, std::vector<Row>& rows) {
  const Case c{ceil, runs, rows};
  pooling_cases(in, c);
  devoxelize_cases(in, c);
  neighbor_cases(in, c);
  algebra_cases(in, c);
}

}  // namespace lattice::bench
