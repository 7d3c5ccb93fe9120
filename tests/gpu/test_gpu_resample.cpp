// GPU suite, resample family: every op's CUDA route against the CPU route on
// the same (rounded) inputs, per element with SPEC §12 tolerances scaled by
// magnitudes that the CPU computes on |inputs| (float64); identical output
// coordinates; run-to-run bitwise determinism; dropout's mask identical to the
// CPU's; empty and one-row inputs; the sticky device error of
// trilinear_upsample3d's children support. Skipped without a device.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/resample.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing::gpu {
namespace {

struct Twin {
  std::vector<Coord> coords;
  SparseTensor cpu, gpu;  // same values; gpu in its own manager
  SparseTensor cpu_abs;   // |features| in float64 on the CPU (magnitudes)
};

Twin make_twin(std::uint64_t seed, DType dtype, int channels, int batches, int lo, int hi, Int3 stride, double density,
               std::int64_t extra_capacity = 0) {
  Rng rng(seed);
  Twin t;
  t.coords = random_coords(rng, batches, lo, hi, {stride.x, stride.y, stride.z}, density);
  const auto rows = static_cast<std::int64_t>(t.coords.size());
  auto all = t.coords;
  // Extra capacity rows (garbage features) far from the data.
  for (std::int64_t i = 0; i < extra_capacity; ++i)
    all.push_back({0, static_cast<int>(1000 + i) * stride.x, 1000 * stride.y, 1000 * stride.z});
  const std::int64_t capacity = rows + extra_capacity;
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(capacity * channels));
  for (std::size_t i = static_cast<std::size_t>(rows * channels); i < v.size(); ++i) v[i] = 1e4;
  const Array f = make_array(v, Shape{capacity, channels}, dtype);
  SparseTensorOptions o;
  o.stride = stride;
  o.active_rows = rows;
  o.manager = CoordinateManager::create();
  t.cpu = SparseTensor::from_coords(coords_array(all), f, o);
  t.cpu_abs = t.cpu.replace_feats(abs64(f));
  o.manager = CoordinateManager::create();
  t.gpu = SparseTensor::from_coords(coords_array(all).to(k_gpu), f.to(k_gpu), o);
  return t;
}

// GPU rows vs CPU rows: same coordinates, values within tol * mag.
void expect_match(const SparseTensor& cpu, const SparseTensor& gpu, const SparseTensor& mag, DType dtype) {
  const std::int64_t rows = cpu.rows();
  ASSERT_EQ(gpu.rows(), rows);
  EXPECT_EQ(coords_from_array(gpu.coords(), rows), coords_from_array(cpu.coords(), rows));
  const auto expect = to_doubles(cpu.feats().rows(0, rows));
  auto m = to_doubles(mag.feats().rows(0, rows));
  for (double& e : m) e = std::abs(e) + 1e-30;
  const std::string report = compare_rows(gpu.feats(), rows, expect, m, dtype);
  EXPECT_TRUE(report.empty()) << report;
}

// |y| + 1 as float64 features: for ops whose error is relative to the output's
// scale (norms), so that values near zero get an absolute floor.
SparseTensor abs_plus_one(const SparseTensor& y) {
  Array m = abs64(y.feats());
  double* p = m.data<double>();
  for (std::int64_t i = 0; i < m.numel(); ++i) p[i] += 1.0;
  return y.replace_feats(m);
}

std::vector<unsigned char> active_bytes(const SparseTensor& t) { return bytes_of(t.feats().rows(0, t.rows())); }

class GpuResampleDtype : public GpuParamTest<DType> {};

// ---- feature ops -----------------------------------------------------------------------

TEST_P(GpuResampleDtype, LinearMatchesCpu) {
  const DType dtype = GetParam();
  for (int cin : {3, 16, 33}) {
    for (int cout : {1, 8, 20}) {
      const Twin t = make_twin(10 + cin * 100 + cout, dtype, cin, 2, -5, 5, Int3{1}, 0.1, 7);
      Rng rng(static_cast<std::uint64_t>(cin * cout));
      const Array w = make_array(random_values(rng, static_cast<std::size_t>(cin * cout)), Shape{cout, cin}, dtype);
      const Array b = make_array(random_values(rng, static_cast<std::size_t>(cout)), Shape{cout}, dtype);
      poison_pool(16 << 20);
      const SparseTensor g = ops::linear(t.gpu, w.to(k_gpu), b.to(k_gpu));
      EXPECT_EQ(g.key(), t.gpu.key());
      const SparseTensor mag = ops::linear(t.cpu_abs, abs64(w), abs64(b));
      expect_match(ops::linear(t.cpu, w, b), g, mag, dtype);
    }
  }
}

TEST_P(GpuResampleDtype, NamedActivationsMatchCpu) {
  const DType dtype = GetParam();
  const Twin t = make_twin(20, dtype, 19, 3, -5, 5, Int3{1}, 0.1, 5);
  using F = SparseTensor (*)(const SparseTensor&);
  const std::vector<std::pair<std::string, F>> ops_list{
      {"silu", ops::silu}, {"sigmoid", ops::sigmoid}, {"tanh", ops::tanh}, {"softplus", ops::softplus}};
  for (const auto& [name, fn] : ops_list) {
    SCOPED_TRACE(name);
    const SparseTensor c = fn(t.cpu);
    expect_match(c, fn(t.gpu), c.replace_feats(abs64(c.feats())), dtype);
  }
  const SparseTensor c1 = ops::gelu(t.cpu, true), c2 = ops::leaky_relu(t.cpu, 0.3);
  expect_match(c1, ops::gelu(t.gpu, true), c1.replace_feats(abs64(t.cpu.feats())), dtype);
  expect_match(c2, ops::leaky_relu(t.gpu, 0.3), c2.replace_feats(abs64(t.cpu.feats())), dtype);
}

TEST_P(GpuResampleDtype, DropoutDrawsTheCpuMask) {
  const DType dtype = GetParam();
  for (double p : {0.0, 0.25, 0.8}) {
    const Twin t = make_twin(30, dtype, 21, 2, -6, 6, Int3{1}, 0.2, 9);
    poison_pool(16 << 20);
    const SparseTensor g = ops::dropout(t.gpu, {p, 1234, true});
    const SparseTensor c = ops::dropout(t.cpu, {p, 1234, true});
    // Same mask and the same single rounding: bitwise equal.
    EXPECT_EQ(active_bytes(g), active_bytes(c)) << "p " << p;
    EXPECT_EQ(active_bytes(ops::dropout(t.gpu, {p, 1234, true})), active_bytes(g));
    EXPECT_EQ(active_bytes(ops::dropout(t.gpu, {p, 1234, false})), active_bytes(t.gpu));
  }
}

TEST_P(GpuResampleDtype, LayerAndRmsNormMatchCpu) {
  const DType dtype = GetParam();
  for (int c : {1, 7, 64, 200}) {
    const Twin t = make_twin(40 + c, dtype, c, 2, -5, 5, Int3{1}, 0.15, 4);
    Rng rng(static_cast<std::uint64_t>(c));
    const Array w = make_array(random_values(rng, static_cast<std::size_t>(c)), Shape{c}, dtype);
    const Array b = make_array(random_values(rng, static_cast<std::size_t>(c)), Shape{c}, dtype);
    poison_pool(16 << 20);
    const SparseTensor gl = ops::layer_norm(t.gpu, {w.to(k_gpu), b.to(k_gpu)});
    const SparseTensor gr = ops::rms_norm(t.gpu, {w.to(k_gpu)});
    const SparseTensor cl = ops::layer_norm(t.cpu, {w, b});
    const SparseTensor cr = ops::rms_norm(t.cpu, {w});
    // Same operation order on both sides: differences are rounding only.
    expect_match(cl, gl, abs_plus_one(cl), dtype);
    expect_match(cr, gr, abs_plus_one(cr), dtype);
    EXPECT_EQ(active_bytes(ops::layer_norm(t.gpu, {w.to(k_gpu), b.to(k_gpu)})), active_bytes(gl));
  }
}

// ---- normalized convolutions ---------------------------------------------------------------

TEST_P(GpuResampleDtype, NormalizedConvsMatchCpu) {
  const DType dtype = GetParam();
  const int cin = 8, cout = 16;
  const Twin t = make_twin(50, dtype, cin, 2, -6, 6, Int3{2}, 0.2);
  Rng rng(51);
  auto weight = [&](int k) {
    return make_array(random_values(rng, static_cast<std::size_t>(k * cin * cout)), Shape{k, cin, cout}, dtype);
  };
  const Array w27 = weight(27), w8 = weight(8);
  const Array b = make_array(random_values(rng, cout), Shape{cout}, dtype);
  const double eps = 1e-4;
  // Magnitudes: the same op on |x|, |W|, |b| in float64 (num = sum |x||w|).
  const SparseTensor cs = ops::normalized_subm_conv3d(t.cpu, w27, b, {.eps = eps});
  const SparseTensor gs = ops::normalized_subm_conv3d(t.gpu, w27.to(k_gpu), b.to(k_gpu), {.eps = eps});
  expect_match(cs, gs, ops::normalized_subm_conv3d(t.cpu_abs, abs64(w27), abs64(b), {.eps = eps}), dtype);
  EXPECT_EQ(gs.key(), t.gpu.key());
  EXPECT_EQ(active_bytes(ops::normalized_subm_conv3d(t.gpu, w27.to(k_gpu), b.to(k_gpu), {.eps = eps})),
            active_bytes(gs));

  const SparseTensor ct = ops::normalized_conv_transpose3d(t.cpu, w8, b, {.eps = eps});
  const SparseTensor gt = ops::normalized_conv_transpose3d(t.gpu, w8.to(k_gpu), b.to(k_gpu), {.eps = eps});
  expect_match(ct, gt, ops::normalized_conv_transpose3d(t.cpu_abs, abs64(w8), abs64(b), {.eps = eps}), dtype);

  const SparseTensor cg = ops::normalized_generative_conv_transpose3d(t.cpu, w8, b, {.eps = eps});
  const SparseTensor gg = ops::normalized_generative_conv_transpose3d(t.gpu, w8.to(k_gpu), b.to(k_gpu), {.eps = eps});
  expect_match(cg, gg, ops::normalized_generative_conv_transpose3d(t.cpu_abs, abs64(w8), abs64(b), {.eps = eps}),
               dtype);

  // Target transposed: a fine set of the GPU manager (and its CPU twin).
  Rng trng(52);
  const auto target = random_coords(trng, 2, -12, 12, {1, 1, 1}, 0.05);
  const SparseTensor ctt =
      ops::normalized_conv_transpose3d(t.cpu, w8, b, {.coordinates = coords_array(target), .eps = eps});
  const SparseTensor gtt = ops::normalized_conv_transpose3d(
      t.gpu, w8.to(k_gpu), b.to(k_gpu), {.coordinates = coords_array(target).to(k_gpu), .eps = eps});
  expect_match(ctt, gtt,
               ops::normalized_conv_transpose3d(t.cpu_abs, abs64(w8), abs64(b),
                                                {.coordinates = coords_array(target), .eps = eps}),
               dtype);
}

// ---- resampling ---------------------------------------------------------------------------------

TEST_P(GpuResampleDtype, PoolTransposeMatchesCpu) {
  const DType dtype = GetParam();
  for (const Int3 k : {Int3{2}, Int3{3}}) {
    const Twin t = make_twin(60 + k.x, dtype, 6, 3, -6, 6, Int3{4}, 0.2);
    const ops::PoolTranspose3dParams p{.kernel_size = k, .stride = Int3{2}};
    poison_pool(16 << 20);
    const SparseTensor g = ops::pool_transpose3d(t.gpu, p);
    expect_match(ops::pool_transpose3d(t.cpu, p), g, ops::pool_transpose3d(t.cpu_abs, p), dtype);
    EXPECT_EQ(active_bytes(ops::pool_transpose3d(t.gpu, p)), active_bytes(g));
  }
}

TEST_P(GpuResampleDtype, TrilinearUpsampleMatchesCpu) {
  const DType dtype = GetParam();
  for (const Int3 r : {Int3{2}, Int3{4, 2, 1}}) {
    const Twin t = make_twin(70 + r.x, dtype, 5, 3, -8, 8, Int3{4}, 0.25, 6);
    const ops::TrilinearUpsample3dParams p{.stride = r};
    poison_pool(16 << 20);
    const SparseTensor g = ops::trilinear_upsample3d(t.gpu, p);
    expect_match(ops::trilinear_upsample3d(t.cpu, p), g, ops::trilinear_upsample3d(t.cpu_abs, p), dtype);
    EXPECT_EQ(active_bytes(ops::trilinear_upsample3d(t.gpu, p)), active_bytes(g));
    // Explicit target (a random fine set, partly unreached).
    Rng rng(71);
    const auto fine = random_coords(rng, 3, -20, 20, {4 / r.x, 4 / r.y, 4 / r.z}, 0.01);
    const ops::TrilinearUpsample3dParams pc{.stride = r, .target = coords_array(fine)};
    const ops::TrilinearUpsample3dParams pg{.stride = r, .target = coords_array(fine).to(k_gpu)};
    expect_match(ops::trilinear_upsample3d(t.cpu, pc), ops::trilinear_upsample3d(t.gpu, pg),
                 ops::trilinear_upsample3d(t.cpu_abs, pc), dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuResampleDtype, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ---- edge cases and device errors -------------------------------------------------------------

class GpuResampleEdge : public GpuTest {};

TEST_F(GpuResampleEdge, LargeInputMatchesCpu) {
  const Twin t = make_twin(80, DType::f32, 16, 2, -40, 40, Int3{2}, 0.1);  // ~100k rows
  const SparseTensor c = ops::trilinear_upsample3d(t.cpu);
  expect_match(c, ops::trilinear_upsample3d(t.gpu), ops::trilinear_upsample3d(t.cpu_abs), DType::f32);
  const SparseTensor ln = ops::layer_norm(t.cpu);
  expect_match(ln, ops::layer_norm(t.gpu), abs_plus_one(ln), DType::f32);
}

TEST_F(GpuResampleEdge, EmptyAndOneRow) {
  for (double density : {0.0, 1.0}) {
    // density 0: no rows; density 1 over a single site: one row.
    const Twin t = make_twin(90, DType::f32, 3, 1, 2, 2, Int3{2}, density);
    const SparseTensor mag = t.cpu_abs;
    expect_match(ops::trilinear_upsample3d(t.cpu), ops::trilinear_upsample3d(t.gpu), ops::trilinear_upsample3d(mag),
                 DType::f32);
    expect_match(ops::pool_transpose3d(t.cpu), ops::pool_transpose3d(t.gpu), ops::pool_transpose3d(mag), DType::f32);
    const Array w = Array::full(Shape{27, 3, 2}, DType::f32, 0.5);
    expect_match(ops::normalized_subm_conv3d(t.cpu, w), ops::normalized_subm_conv3d(t.gpu, w.to(k_gpu)),
                 ops::normalized_subm_conv3d(mag, abs64(w)), DType::f32);
    const SparseTensor ln = ops::layer_norm(t.cpu);
    expect_match(ln, ops::layer_norm(t.gpu), abs_plus_one(ln), DType::f32);
    EXPECT_EQ(active_bytes(ops::dropout(t.gpu, {0.5, 1, true})), active_bytes(ops::dropout(t.cpu, {0.5, 1, true})));
  }
}

TEST_F(GpuResampleEdge, ChildrenOutsideTheKeyRangeAreADeviceError) {
  const std::int32_t edge = ((1 << 17) - 1) * 2;
  const SparseTensor far = SparseTensor::from_coords(
      Array::from_vector(std::vector<std::int32_t>{0, edge, 0, 0}, Shape{1, 4}).to(k_gpu),
      Array::full(Shape{1, 1}, DType::f32, 1.0, k_gpu), {.stride = Int3{2}, .manager = CoordinateManager::create()});
  expect_error<ValueError>(
      [&] {
        const SparseTensor y = ops::trilinear_upsample3d(far);
        synchronize(k_gpu);
      },
      {"[trilinear_upsample3d]", "key range"});
  synchronize(k_gpu);  // the slot was cleared by the raise
}

}  // namespace
}  // namespace lattice::testing::gpu
