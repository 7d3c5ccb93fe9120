// GPU suite, weight quantization (SPEC §9): CUDA quantize_weight and
// dequantize_weight bitwise equal to the CPU's for every layout x bits x group
// size x dtype (and every result dtype of dequantize); the non-finite check on
// the device; quantized convolutions and linear on CUDA equal to the same op on
// the dequantized weight (bitwise, same device) and to the CPU route within
// SPEC §12 tolerances; device mismatch errors. Skipped without a device.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/core/quantized_weight.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/quantized.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing::gpu {
namespace {

struct QCase {
  int layout;  // 0 linear, 1 kernel-major, 2 dense
  int bits, group, cin;
  DType dtype;
};

Shape shape_of(int layout, int cin, int cout) {
  if (layout == 0) return Shape{cout, cin};
  if (layout == 1) return Shape{27, cin, cout};
  return Shape{cout, 3, 1, 2, cin};
}

class GpuQuantize : public GpuParamTest<QCase> {};

TEST_P(GpuQuantize, BitwiseEqualToCpu) {
  const QCase c = GetParam();
  Rng rng(static_cast<std::uint64_t>(c.layout * 1000 + c.bits * 100 + c.group + c.cin));
  const int cout = 7;
  const Shape shape = shape_of(c.layout, c.cin, cout);
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(shape.numel()));
  for (std::size_t i = 0; i < v.size(); i += 11) v[i] *= 40.0;  // some wide groups
  const Array w = make_array(v, shape, c.dtype);
  const QuantizeParams p{.bits = c.bits, .group_size = c.group};
  const QuantizedWeight cpu = quantize_weight(w, p);
  poison_pool();
  const QuantizedWeight gpu = quantize_weight(w.to(k_gpu), p);
  EXPECT_EQ(gpu.device(), k_gpu);
  EXPECT_EQ(gpu.kernel_size(), cpu.kernel_size());
  EXPECT_EQ(gpu.layout(), cpu.layout());
  EXPECT_EQ(gpu.weight().to_vector<std::uint32_t>(), cpu.weight().to_vector<std::uint32_t>());
  EXPECT_EQ(to_doubles(gpu.scales().to(Device::cpu())), to_doubles(cpu.scales()));
  EXPECT_EQ(to_doubles(gpu.biases().to(Device::cpu())), to_doubles(cpu.biases()));
  for (DType out : {c.dtype, DType::f32, DType::f16, DType::bf16, DType::f64}) {
    poison_pool();
    const Array dg = dequantize_weight(gpu, out);
    EXPECT_EQ(dg.device(), k_gpu);
    EXPECT_EQ(to_doubles(dg.to(Device::cpu())), to_doubles(dequantize_weight(cpu, out))) << dtype_name(out);
  }
  // A CPU-quantized weight moved to the device dequantizes the same way.
  EXPECT_EQ(to_doubles(dequantize_weight(cpu.to(k_gpu)).to(Device::cpu())), to_doubles(dequantize_weight(cpu)));
}

std::vector<QCase> quantize_cases() {
  std::vector<QCase> out;
  const int cins[] = {1, 31, 64, 77, 130, 256};
  int i = 0;
  for (int layout : {0, 1, 2})
    for (int bits : {4, 8})
      for (int group : {32, 64, 128}) {
        out.push_back({layout, bits, group, cins[i % 6], i % 2 ? DType::f16 : DType::f32});
        ++i;
      }
  return out;
}

std::string quantize_case_name(const ::testing::TestParamInfo<QCase>& info) {
  constexpr const char* k_layouts[] = {"linear", "kernel_major", "dense_5d"};
  const QCase& c = info.param;
  return std::string(k_layouts[c.layout]) + "_b" + std::to_string(c.bits) + "_g" + std::to_string(c.group) + "_cin" +
         std::to_string(c.cin) + "_" + std::string(dtype_name(c.dtype));
}

INSTANTIATE_TEST_SUITE_P(All, GpuQuantize, ::testing::ValuesIn(quantize_cases()), quantize_case_name);

class GpuQuantizeErrors : public GpuTest {};

TEST_F(GpuQuantizeErrors, NonFiniteAndDeviceMismatch) {
  Rng rng(21);
  std::vector<double> v = random_values(rng, 4 * 40);
  v[33] = std::numeric_limits<double>::infinity();
  expect_error<ValueError>(
      [&] {
        quantize_weight(make_array(v, Shape{4, 40}, DType::f32).to(k_gpu));
      },
      {"[quantize_weight]", "'weight'", "non-finite"});
  const QuantizedWeight q = quantize_weight(make_array(random_values(rng, 27 * 8 * 4), Shape{27, 8, 4}, DType::f32));
  const auto coords = random_coords(rng, 1, -3, 3, I3{1, 1, 1}, 0.5);
  const auto n = static_cast<std::int64_t>(coords.size());
  const SparseTensor x = SparseTensor::from_coords(
      coords_array(coords).to(k_gpu),
      make_array(random_values(rng, static_cast<std::size_t>(n * 8)), Shape{n, 8}, DType::f32).to(k_gpu),
      {.manager = CoordinateManager::create()});
  expect_error<DeviceError>([&] { ops::subm_conv3d(x, q); }, {"[subm_conv3d]", "'weight'", "cpu", "cuda:0"});
  expect_error<DeviceError>(
      [&] {
        QuantizedWeight(q.weight().to(k_gpu), q.scales(), q.biases(), q.group_size(), q.bits(), q.in_channels(),
                        q.out_channels(), q.kernel_size(), q.layout());
      },
      {"[QuantizedWeight]", "'scales'"});
}

enum class Kind { conv, subm, transposed, generative, linear };

struct OpCase {
  Kind kind;
  DType feat, wdtype;
  int bits;
};

class GpuQuantizedOps : public GpuParamTest<OpCase> {};

SparseTensor run(Kind kind, const SparseTensor& x, const auto& w) {
  switch (kind) {
    case Kind::conv:
      return ops::conv3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case Kind::subm:
      return ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = Int3{3}});
    case Kind::transposed:
      return ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case Kind::generative:
      return ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case Kind::linear:
      return ops::linear(x, w);
  }
  throw std::logic_error("unreachable");
}

TEST_P(GpuQuantizedOps, MatchDequantizedAndCpu) {
  const OpCase c = GetParam();
  Rng rng(static_cast<std::uint64_t>(c.kind) * 7 + static_cast<std::uint64_t>(c.bits));
  const bool up = c.kind == Kind::transposed || c.kind == Kind::generative;
  const I3 stride = up ? I3{2, 2, 2} : I3{1, 1, 1};
  const auto coords = random_coords(rng, 2, -5, 5, stride, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int cin = 40, cout = 12;
  const Array f = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, c.feat);
  const SparseTensorOptions o{.stride = Int3{stride[0]}, .manager = CoordinateManager::create()};
  const SparseTensor x_cpu = SparseTensor::from_coords(coords_array(coords), f, o);
  const SparseTensorOptions og{.stride = Int3{stride[0]}, .manager = CoordinateManager::create()};
  const SparseTensor x_gpu = SparseTensor::from_coords(coords_array(coords).to(k_gpu), f.to(k_gpu), og);
  const Shape shape = c.kind == Kind::linear ? Shape{cout, cin} : Shape{27, cin, cout};
  const Array w = make_array(random_values(rng, static_cast<std::size_t>(shape.numel())), shape, c.wdtype);
  const QuantizedWeight q_cpu = quantize_weight(w, {.bits = c.bits});
  const QuantizedWeight q_gpu = quantize_weight(w.to(k_gpu), {.bits = c.bits});

  const SparseTensor y_gpu = run(c.kind, x_gpu, q_gpu);
  const SparseTensor y_deq = run(c.kind, x_gpu, dequantize_weight(q_gpu, c.feat));
  const std::int64_t rows = y_gpu.rows();
  ASSERT_EQ(y_deq.rows(), rows);
  EXPECT_EQ(to_doubles(y_gpu.feats().rows(0, rows).to(Device::cpu())),
            to_doubles(y_deq.feats().rows(0, rows).to(Device::cpu())));

  // CPU route in float64 on the same dequantized weight; magnitudes from |x| |w|.
  const Array d64 = dequantize_weight(q_cpu, c.feat).astype(DType::f64);
  const SparseTensor x64 = x_cpu.replace_feats(f.astype(DType::f64));
  const SparseTensor y_ref = run(c.kind, x64, d64);
  const SparseTensor mag = run(c.kind, x64.replace_feats(abs64(f)), abs64(d64));
  ASSERT_EQ(y_ref.rows(), rows);
  EXPECT_EQ(coords_from_array(y_gpu.coords().to(Device::cpu()), rows), coords_from_array(y_ref.coords(), rows));
  auto m = to_doubles(mag.feats().rows(0, rows));
  for (double& e : m) e += 1e-30;
  const std::string report =
      compare_rows(y_gpu.feats().to(Device::cpu()), rows, to_doubles(y_ref.feats().rows(0, rows)), m, c.feat);
  EXPECT_TRUE(report.empty()) << report;
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> out;
  int i = 0;
  for (Kind k : {Kind::conv, Kind::subm, Kind::transposed, Kind::generative, Kind::linear})
    for (DType feat : {DType::f32, DType::f16}) {
      out.push_back({k, feat, i % 2 ? DType::f16 : DType::f32, i % 3 ? 4 : 8});
      ++i;
    }
  return out;
}

std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info) {
  constexpr const char* k_kinds[] = {"conv", "subm", "transposed", "generative", "linear"};
  const OpCase& c = info.param;
  return std::string(k_kinds[static_cast<int>(c.kind)]) + "_x" + std::string(dtype_name(c.feat)) + "_w" +
         std::string(dtype_name(c.wdtype)) + "_b" + std::to_string(c.bits) + "_" + std::to_string(info.index);
}

INSTANTIATE_TEST_SUITE_P(All, GpuQuantizedOps, ::testing::ValuesIn(op_cases()), op_case_name);

}  // namespace
}  // namespace lattice::testing::gpu
