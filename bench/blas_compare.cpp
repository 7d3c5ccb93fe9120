// Compares the CPU GEMM libraries on the shapes of the gather-GEMM-scatter
// route: (rows x C_in) * (C_in x C_out) with rows = edges of one kernel
// offset. Prints GFLOP/s (median of repeated runs) per library and shape and
// writes JSON when given a path. Results: docs/cpu-blas.md.
//
//   bench_blas [--json out.json] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>
#include <omp.h>

#if defined(LATTICE_BENCH_ONEDNN)
#include <dnnl.h>
#endif

extern "C" void openblas_set_num_threads(int num_threads);

namespace {

struct Shape {
  long m, k, n;
};

template <class F>
double median_ms(F&& f, int reps) {
  std::vector<double> t;
  f();  // warm-up
  for (int r = 0; r < reps; ++r) {
    const auto s = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  int threads = omp_get_max_threads();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
  }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  // Per-offset rows at full resolution are ~3k-30k (SemanticKITTI at 0.05 m:
  // 284k subm k3 edges over 27 offsets, 94k on the centre offset).
  const std::vector<Shape> shapes = {{94444, 4, 32},    {94444, 32, 32},  {10000, 32, 32},   {3000, 32, 32},
                                     {30000, 64, 64},   {10000, 64, 64},  {20000, 128, 128}, {5000, 128, 128},
                                     {10000, 256, 256}, {3000, 256, 256}, {30000, 128, 96},  {10000, 96, 96}};
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::FILE* json = json_path ? std::fopen(json_path, "w") : nullptr;
  if (json) std::fprintf(json, "{\"threads\": %d, \"results\": [\n", threads);
  std::printf("threads: %d\n%-18s %14s %14s %8s\n", threads, "m x k x n", "OpenBLAS GF/s", "oneDNN GF/s", "ratio");
  double sum_ob = 0, sum_dn = 0;
  for (std::size_t si = 0; si < shapes.size(); ++si) {
    const Shape s = shapes[si];
    std::vector<float> a(static_cast<std::size_t>(s.m * s.k)), b(static_cast<std::size_t>(s.k * s.n)),
        c(static_cast<std::size_t>(s.m * s.n));
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    const double flops = 2.0 * s.m * s.k * s.n;
    const int reps = std::max(5, static_cast<int>(2e9 / flops));
    const double t_ob = median_ms(
        [&] {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(s.m), static_cast<int>(s.n),
                      static_cast<int>(s.k), 1.0f, a.data(), static_cast<int>(s.k), b.data(), static_cast<int>(s.n),
                      0.0f, c.data(), static_cast<int>(s.n));
        },
        reps);
    double t_dn = 0;
#if defined(LATTICE_BENCH_ONEDNN)
    t_dn = median_ms(
        [&] { dnnl_sgemm('N', 'N', s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f, c.data(), s.n); }, reps);
#endif
    const double g_ob = flops / (t_ob * 1e6), g_dn = t_dn > 0 ? flops / (t_dn * 1e6) : 0;
    sum_ob += g_ob;
    sum_dn += g_dn;
    char name[64];
    std::snprintf(name, sizeof name, "%ldx%ldx%ld", s.m, s.k, s.n);
    std::printf("%-18s %14.1f %14.1f %8.2f\n", name, g_ob, g_dn, g_dn > 0 ? g_ob / g_dn : 0.0);
    if (json) {
      std::fprintf(json,
                   "  {\"m\": %ld, \"k\": %ld, \"n\": %ld, \"openblas_gflops\": %.2f, \"onednn_gflops\": %.2f}%s\n",
                   s.m, s.k, s.n, g_ob, g_dn, si + 1 < shapes.size() ? "," : "");
    }
  }
  std::printf("mean GFLOP/s: OpenBLAS %.1f, oneDNN %.1f\n", sum_ob / shapes.size(), sum_dn / shapes.size());
  if (json) {
    std::fprintf(json, "]}\n");
    std::fclose(json);
  }
  return 0;
}
