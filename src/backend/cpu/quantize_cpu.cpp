// CPU kernels of weight quantization (see backend/quantize_kernels.hpp and
// lattice/core/quantized_weight.hpp for the formulas). One OpenMP task per
// group row; every group writes whole words of its own (group sizes are
// multiples of 32 channels), so rows and groups never share a word. Compiled
// with -ffp-contract=off: each operation rounds exactly as the CUDA kernels'
// explicitly rounded ones.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/cpu/dispatch.hpp"
#include "backend/quantize_kernels.hpp"

namespace lattice::cpu {

namespace {

using quant::Geometry;

template <class T>
bool quantize_typed(const T* w, const Geometry& g, std::uint32_t* codes, T* scales, T* biases) {
  const std::int64_t rows = g.rows(), words = g.words(), groups = g.groups();
  const float levels = static_cast<float>((1 << g.bits) - 1);
  const std::uint32_t max_code = (1u << g.bits) - 1u;
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t k = r / g.cout, co = r % g.cout;
    const T* src = w + k * g.stride_k + co * g.stride_co;
    std::uint32_t* row_codes = codes + r * words;
    for (std::int64_t j = 0; j < words; ++j) row_codes[j] = 0;
    for (std::int64_t grp = 0; grp < groups; ++grp) {
      const std::int64_t c0 = grp * g.group_size;
      const std::int64_t c1 = std::min<std::int64_t>(c0 + g.group_size, g.cin);  // real channels only
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (std::int64_t ci = c0; ci < c1; ++ci) {
        const float v = static_cast<float>(load(src[ci * g.stride_ci]));
        bad = bad || !std::isfinite(v);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      float scale = (hi - lo) / levels;
      bad = bad || !std::isfinite(scale);  // a range that overflows float32
      if (!(scale >= 1e-7f)) scale = 1e-7f;
      const T scale_stored = store<T>(scale), bias_stored = store<T>(lo);
      scales[r * groups + grp] = scale_stored;
      biases[r * groups + grp] = bias_stored;
      // Codes against the stored (dtype-rounded) scale and bias.
      const float s = static_cast<float>(load(scale_stored)), b = static_cast<float>(load(bias_stored));
      for (std::int64_t ci = c0; ci < c1; ++ci) {
        const float v = static_cast<float>(load(src[ci * g.stride_ci]));
        float q = std::nearbyint((v - b) / s);  // round half to even (default rounding mode)
        q = std::fmin(std::fmax(q, 0.0f), levels);
        const std::uint32_t code = static_cast<std::uint32_t>(q) & max_code;
        const std::int64_t bit = ci * g.bits;
        row_codes[bit / 32] |= code << (bit % 32);
      }
    }
  }
  return !bad;
}

template <class S, class O>
void dequantize_typed(const std::uint32_t* codes, const S* scales, const S* biases, const Geometry& g, O* out) {
  const std::int64_t rows = g.rows(), words = g.words(), groups = g.groups();
  const std::uint32_t mask = (1u << g.bits) - 1u;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t k = r / g.cout, co = r % g.cout;
    O* dst = out + k * g.stride_k + co * g.stride_co;
    const std::uint32_t* row_codes = codes + r * words;
    for (std::int64_t ci = 0; ci < g.cin; ++ci) {
      const std::int64_t grp = ci / g.group_size, bit = ci * g.bits;
      const std::uint32_t code = (row_codes[bit / 32] >> (bit % 32)) & mask;
      // float32 whatever the result dtype: one value per code, rounded (or widened) once.
      const float s = static_cast<float>(load(scales[r * groups + grp]));
      const float b = static_cast<float>(load(biases[r * groups + grp]));
      dst[ci * g.stride_ci] = store<O>(s * static_cast<float>(code) + b);
    }
  }
}

}  // namespace

void quantize_weight(const Array& weight, const Geometry& g, Array& codes, Array& scales, Array& biases) {
  const bool ok = visit_float(weight.dtype(), [&]<class T>() -> bool {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, half>) {
      return quantize_typed<T>(weight.data<T>(), g, codes.data<std::uint32_t>(), scales.data<T>(), biases.data<T>());
    } else {
      throw TypeError("[quantize_weight] argument 'weight': expected float32 or float16");
    }
  });
  check(ok, "quantize_weight", "weight", "has non-finite values (or a group range that overflows float32)");
}

void dequantize_weight(const Array& codes, const Array& scales, const Array& biases, const Geometry& g, Array& out) {
  visit_float(scales.dtype(), [&]<class S>() {
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, half>) {
      visit_float(out.dtype(), [&]<class O>() {
        dequantize_typed<S, O>(codes.data<std::uint32_t>(), scales.data<S>(), biases.data<S>(), g, out.data<O>());
      });
    } else {
      throw TypeError("[dequantize_weight] argument 'q': scales must be float32 or float16");
    }
  });
}

}  // namespace lattice::cpu
