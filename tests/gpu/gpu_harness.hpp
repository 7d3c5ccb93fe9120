// The GPU suite's shared harness: every CUDA op is run on fresh random inputs
// and compared, per element, with the CPU route evaluated in float64 on the
// same (rounded) inputs. Tolerances are SPEC §12's, scaled by the magnitude
// sum |x| |w| (+ |b|), which the CPU route also computes (on |x| and |w|).
// Outputs are poisoned before each run (freed pool memory is filled with NaN),
// so an element a kernel forgets to write fails the comparison.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/core/backend_info.hpp"
#include "lattice/core/stream.hpp"
#include "support/test_support.hpp"

namespace lattice::testing::gpu {

inline const Device k_gpu = Device::cuda(0);

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  }
};

template <class P>
class GpuParamTest : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  }
};

// Fills `bytes` of the device's pool with NaN and frees it again, so that the
// next allocations are likely to reuse poisoned memory.
inline void poison_pool(std::int64_t bytes = std::int64_t{256} << 20) {
  Array junk = Array::full(Shape{bytes / 4}, DType::f32, std::nan(""), k_gpu);
  synchronize(k_gpu);
}

// Elementwise |a| in float64 on the host.
inline Array abs64(const Array& a) {
  Array out = a.to(Device::cpu()).astype(DType::f64);
  double* p = out.data<double>();
  for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = std::abs(p[i]);
  return out;
}

// Compares the first `rows` rows of a GPU result with reference values.
inline std::string compare_rows(const Array& got, std::int64_t rows, const std::vector<double>& expect,
                                const std::vector<double>& magnitude, DType dtype, bool tf32 = false) {
  const std::vector<double> values = to_doubles(got.rows(0, rows));
  const double tol = tf32 ? 2e-3 : tolerance_for(dtype);
  return compare_elements(values, expect, magnitude, tol, static_cast<std::size_t>(got.dim(1)));
}

}  // namespace lattice::testing::gpu
