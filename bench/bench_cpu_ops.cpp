// CPU benchmark of the memory-bound op families on the real scan (PERF.md).
//
//   bench_cpu_ops [--data DIR] [--runs N] [--json FILE]
//
// The scan (../shared/data/semantickitti/000000.bin, else the built-in one)
// is voxelized at 0.05 m; then, with relations and hash indices built before
// timing: pooling and resampling, devoxelize to every point, knn / radius over
// every point, joins by coordinate value. Each case prints median and min wall
// time over the runs and floor_ratio = (minimum bytes / copy bandwidth) /
// median, where the copy bandwidth (read + write) is measured first with the
// same thread count (OMP_NUM_THREADS). The minimum bytes are those of
// bench_gpu_ops.cpp: each input read once, each output written once, one int32
// index per relation edge.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <omp.h>

#include "lattice/lattice.hpp"

namespace {

using namespace lattice;
using Clock = std::chrono::steady_clock;

struct Row {
  std::string name, dtype, note;
  double bytes = 0, median_ms = 0, min_ms = 0, floor_ratio = 0;
};

std::pair<double, double> time_ms(const std::function<void()>& f, int runs) {
  f();  // warm-up (first-touch allocations, lazily built indices)
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

// Read + write bytes per second of a parallel copy of 512 MiB.
double copy_bandwidth() {
  const std::size_t bytes = std::size_t{512} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const auto [median, min] = time_ms(
      [&] {
#pragma omp parallel
        {
          const std::size_t nt = static_cast<std::size_t>(omp_get_num_threads());
          const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
          const std::size_t chunk = (bytes + nt - 1) / nt, b = std::min(bytes, t * chunk),
                            e = std::min(bytes, b + chunk);
          std::memcpy(dst.data() + b, src.data() + b, e - b);
        }
      },
      5);
  (void)min;
  return 2.0 * static_cast<double>(bytes) / (median * 1e-3);
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = "../shared/data", json_path = "bench_cpu_ops.json";
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_cpu_ops [--data DIR] [--runs N] [--json FILE]\n");
      return 2;
    }
  }
  const double bw = copy_bandwidth();
  std::printf("threads: %d, copy bandwidth %.1f GB/s (read+write)\n", omp_get_max_threads(), bw / 1e9);

  io::PointCloud cloud;
  std::string scan = "semantickitti-000000";
  const std::filesystem::path kitti = std::filesystem::path(data_dir) / "semantickitti/000000.bin";
  if (std::filesystem::exists(kitti)) {
    cloud = io::read_kitti_bin(kitti);
  } else {
    cloud = sim::simulate_lidar_scan({});
    scan = "built-in-scan";
  }
  const Device cpu = Device::cpu();
  const Array points = cloud.positions.to(cpu);
  const std::int64_t n = points.dim(0);
  const ops::Voxelized vox = ops::voxelize(points, points, {.voxel_size = 0.05});
  const std::int64_t m = vox.tensor.rows();
  std::printf("input: %s, %lld points -> %lld voxels at 0.05 m\n\n", scan.c_str(), static_cast<long long>(n),
              static_cast<long long>(m));

  std::vector<Row> rows;
  auto add = [&](const std::string& name, DType dtype, double bytes, const std::string& note,
                 const std::function<void()>& f) {
    const auto [median, min] = time_ms(f, runs);
    rows.push_back({name, std::string(dtype_name(dtype)), note, bytes, median, min, bytes / bw / (median * 1e-3)});
  };
  auto edges_of = [](const std::function<void()>& f) {
    TraceSession trace;
    f();
    return trace.records().back();
  };

  add("voxelize 0.05 m (mean of x, y, z)", DType::f32, 24.0 * n + 16.0 * m + 12.0 * m, "hash + reduce",
      [&] { ops::voxelize(points, points, {.voxel_size = 0.05}); });
  const int ch = 64;
  const DType dtype = DType::f32;
  const double item = 4;
  const SparseTensor x = vox.tensor.replace_feats(Array::full(Shape{vox.tensor.capacity(), ch}, dtype, 0.5, cpu));
  for (ops::PoolMode mode : {ops::PoolMode::max, ops::PoolMode::avg}) {
    const OpRecord r = edges_of([&] { ops::pool3d(x, mode); });
    add(std::string(ops::pool_mode_name(mode)) + "_pool3d k2 s2 C=64", dtype,
        item * ch * static_cast<double>(m + r.rows_out) + 4.0 * r.edges, "cached relation",
        [&] { ops::pool3d(x, mode); });
  }
  const SparseTensor coarse = ops::max_pool3d(x);
  const std::int64_t mc = coarse.rows();
  const OpRecord pt = edges_of([&] { ops::pool_transpose3d(coarse, {.target = x}); });
  add("pool_transpose3d k2 s2 C=64 (target)", dtype, item * ch * static_cast<double>(mc + m) + 4.0 * pt.edges,
      "cached relation", [&] { ops::pool_transpose3d(coarse, {.target = x}); });
  add("trilinear_upsample3d r=2 C=64 (target)", dtype, item * ch * static_cast<double>(mc + m), "",
      [&] { ops::trilinear_upsample3d(coarse, {.target = x}); });
  add("global_pool avg C=64", dtype, item * ch * static_cast<double>(m) + 16.0 * m, "",
      [&] { ops::global_pool(x, ops::PoolMode::avg, 1); });

  const double dbytes = item * ch * static_cast<double>(m + n) + 12.0 * n;
  add("devoxelize linear C=64 -> points", dtype, dbytes, "8 hash lookups per point",
      [&] { ops::devoxelize(x, points, {.voxel_size = 0.05}); });
  add("devoxelize nearest C=64 (point_voxel_map)", dtype, dbytes - 8.0 * n, "gather through the map", [&] {
    ops::devoxelize(x, points, {.voxel_size = 0.05, .interpolation = ops::Interpolation::nearest}, vox.inverse_rows);
  });

  const ops::PointSet pts{points, std::nullopt};
  for (std::int64_t k : {8, 16}) {
    add("knn k=" + std::to_string(k) + " (all points)", DType::f32, 24.0 * n + 8.0 * n * k, "grid search",
        [&] { ops::knn_relation(pts, pts, k); });
  }
  add("radius 0.2 m, max 32 (all points)", DType::f32, 24.0 * n + 8.0 * n * 32, "grid search",
      [&] { ops::radius_relation(pts, pts, 0.2, 32); });
  const ops::NeighborRelation rel = ops::knn_relation(pts, pts, 16);
  const Array f32 = Array::full(Shape{n, 32}, DType::f32, 0.5, cpu);
  add("gather_neighbor_features k=16 C=32", DType::f32, 4.0 * 32 * n * 17 + 4.0 * n * 16, "",
      [&] { ops::gather_neighbor_features(f32, rel); });

  const SparseTensor y = ops::morton_sort_coords(x);
  add("sparse_binary add, outer join C=64", dtype, item * ch * 3.0 * m + 32.0 * m, "different keys: hash join",
      [&] { ops::sparse_binary(ops::BinaryOp::add, x, y); });
  const SparseTensor x2 = x.replace_feats(Array::full(Shape{x.capacity(), ch}, dtype, 0.25, cpu));
  add("add, same key C=64", dtype, item * ch * 3.0 * m, "row-wise", [&] { ops::add(x, x2); });
  add("morton_sort_coords C=64", dtype, 2.0 * (16.0 + item * ch) * m, "", [&] { ops::morton_sort_coords(x); });

  std::ofstream js(json_path);
  js << "{\n  \"threads\": " << omp_get_max_threads() << ",\n  \"copy_gb_s\": " << bw / 1e9 << ",\n  \"input\": \""
     << scan << "\",\n  \"points\": " << n << ",\n  \"voxels\": " << m << ",\n  \"cases\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    js << "    {\"name\": \"" << r.name << "\", \"dtype\": \"" << r.dtype << "\", \"bytes\": " << r.bytes
       << ", \"median_ms\": " << r.median_ms << ", \"min_ms\": " << r.min_ms << ", \"floor_ratio\": " << r.floor_ratio
       << ", \"note\": \"" << r.note << "\"}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  js << "  ]\n}\n";
  std::printf("%-44s %-8s %10s %10s %8s  %s\n", "case", "dtype", "median", "min", "floor", "note");
  for (const Row& r : rows) {
    std::printf("%-44s %-8s %8.2fms %8.2fms %8.3f  %s\n", r.name.c_str(), r.dtype.c_str(), r.median_ms, r.min_ms,
                r.floor_ratio, r.note.c_str());
  }
  std::printf("(json: %s)\n", json_path.c_str());
  return 0;
}
