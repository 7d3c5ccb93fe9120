// CUDA kernels of weight quantization: the same float32 expressions as
// backend/cpu/quantize_cpu.cpp with explicitly rounded operations (sub_rn,
// div_rn, mul_rn, add_rn; rintf rounds half to even), so codes, scales,
// biases and dequantized weights are bitwise equal to the CPU's.
//
// quantize: one thread per (group row, group); a group owns whole words
// (group sizes are multiples of 32 channels), so no two threads write one
// word and no atomics are needed besides the non-finite flag.
// dequantize: one thread per (group row, input channel).
#include <cstdint>

#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/quantize_kernels.hpp"

namespace lattice::cuda {

namespace {

using device::add_rn;
using device::div_rn;
using device::load;
using device::mul_rn;
using device::store;
using device::sub_rn;
using quant::Geometry;

constexpr int k_threads = 256;

cudaStream_t prepare(Device device) {
  LATTICE_CUDA_CHECK(cudaSetDevice(device.index));
  return stream_of(device);
}

template <class T>
__global__ void quantize_kernel(const T* __restrict__ w, Geometry g, std::uint32_t* __restrict__ codes,
                                T* __restrict__ scales, T* __restrict__ biases, std::int32_t* nonfinite) {
  const std::int64_t groups = g.groups(), words = g.words();
  const float levels = static_cast<float>((1 << g.bits) - 1);
  const std::uint32_t max_code = (1u << g.bits) - 1u;
  const std::int64_t words_per_group = g.group_size * g.bits / 32;
  LATTICE_GRID_LOOP(t, g.rows() * groups) {
    const std::int64_t r = t / groups, grp = t % groups;
    const std::int64_t k = r / g.cout, co = r % g.cout;
    const T* src = w + k * g.stride_k + co * g.stride_co;
    const std::int64_t c0 = grp * g.group_size;
    const std::int64_t c1 = c0 + g.group_size < g.cin ? c0 + g.group_size : g.cin;
    float lo = __int_as_float(0x7f800000), hi = -lo;
    bool bad = false;
    for (std::int64_t ci = c0; ci < c1; ++ci) {
      const float v = static_cast<float>(load(src[ci * g.stride_ci]));
      bad = bad || !isfinite(v);
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
    }
    float scale = div_rn(sub_rn(hi, lo), levels);
    bad = bad || !isfinite(scale);
    if (!(scale >= 1e-7f)) scale = 1e-7f;
    const T scale_stored = store<T>(scale), bias_stored = store<T>(lo);
    scales[r * groups + grp] = scale_stored;
    biases[r * groups + grp] = bias_stored;
    const float s = static_cast<float>(load(scale_stored)), b = static_cast<float>(load(bias_stored));
    std::uint32_t* group_codes = codes + r * words + grp * words_per_group;
    for (std::int64_t j = 0; j < words_per_group; ++j) group_codes[j] = 0;
    for (std::int64_t ci = c0; ci < c1; ++ci) {
      const float v = static_cast<float>(load(src[ci * g.stride_ci]));
      float q = rintf(div_rn(sub_rn(v, b), s));
      q = fminf(fmaxf(q, 0.0f), levels);
      const std::uint32_t code = static_cast<std::uint32_t>(q) & max_code;
      const std::int64_t bit = ci * g.bits;
      codes[r * words + bit / 32] |= code << (bit % 32);
    }
    if (bad) atomicExch(nonfinite, 1);
  }
}

template <class S, class O>
__global__ void dequantize_kernel(const std::uint32_t* __restrict__ codes, const S* __restrict__ scales,
                                  const S* __restrict__ biases, Geometry g, O* __restrict__ out) {
  const std::int64_t groups = g.groups(), words = g.words();
  const std::uint32_t mask = (1u << g.bits) - 1u;
  LATTICE_GRID_LOOP(t, g.rows() * g.cin) {
    const std::int64_t r = t / g.cin, ci = t % g.cin;
    const std::int64_t k = r / g.cout, co = r % g.cout;
    const std::int64_t grp = ci / g.group_size, bit = ci * g.bits;
    const std::uint32_t code = (codes[r * words + bit / 32] >> (bit % 32)) & mask;
    const float s = static_cast<float>(load(scales[r * groups + grp]));
    const float b = static_cast<float>(load(biases[r * groups + grp]));
    out[k * g.stride_k + co * g.stride_co + ci * g.stride_ci] =
        store<O>(add_rn(mul_rn(s, static_cast<float>(code)), b));
  }
}

}  // namespace

void quantize_weight(const Array& weight, const Geometry& g, Array& codes, Array& scales, Array& biases,
                     Array& nonfinite) {
  const std::int64_t n = g.rows() * g.groups();
  if (n == 0) return;
  cudaStream_t stream = prepare(weight.device());
  visit_float_device(weight.dtype(), [&]<class T>() {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, __half>) {
      quantize_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
          ptr<T>(weight), g, ptr<std::uint32_t>(codes), ptr<T>(scales), ptr<T>(biases), ptr<std::int32_t>(nonfinite));
      LATTICE_CUDA_LAUNCH_CHECK();
    } else {
      throw TypeError("[quantize_weight] argument 'weight': expected float32 or float16");
    }
  });
}

void dequantize_weight(const Array& codes, const Array& scales, const Array& biases, const Geometry& g, Array& out) {
  const std::int64_t n = g.rows() * g.cin;
  if (n == 0) return;
  cudaStream_t stream = prepare(out.device());
  visit_float_device(scales.dtype(), [&]<class S>() {
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, __half>) {
      visit_float_device(out.dtype(), [&]<class O>() {
        dequantize_kernel<S, O><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
            ptr<std::uint32_t>(codes), ptr<S>(scales), ptr<S>(biases), g, ptr<O>(out));
        LATTICE_CUDA_LAUNCH_CHECK();
      });
    } else {
      throw TypeError("[dequantize_weight] argument 'q': scales must be float32 or float16");
    }
  });
}

}  // namespace lattice::cuda
