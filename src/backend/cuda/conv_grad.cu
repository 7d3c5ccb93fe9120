// CUDA convolution VJPs (SPEC §13). Every kernel is a gather with a fixed
// summation order -- no atomics, bitwise identical run to run -- and bounds
// its work by device-side counts (no host reads).
//
//   input grad   dx = conv(dy, W^T) run backwards through the forward's own
//                kernels (tensor-core implicit GEMM, SIMT otherwise): over the
//                forward's sorted map with mirrored offsets for submanifold
//                relations, else over the relation's input-side map.
//   weight grad  tensor cores (conv_wgrad_mma.cu) for 16-byte rows; else the
//                SIMT kernel below: grid (C_out tiles, C_in tiles, K * S): block (k, s) takes the
//                s-th of S equal slices of offset k's edges (kernel CSR), stages
//                16 edges at a time of x[i] and dy[o] in shared memory and
//                accumulates a 16x16 tile of x^T dy in registers. The S
//                per-slice partials are then summed in slice order. Work:
//                E * C_in * C_out FMAs in all (E = edges), reading each edge's
//                x row C_out/16 times and dy row C_in/16 times.
//   bias grad    one block per channel: fixed per-thread strides over the
//                active rows, then a fixed shared-memory tree.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/api.hpp"
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/tuning/conv_routes.hpp"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;
constexpr int k_tile = 16;  // weight-gradient tile: 16 edges x 16 channels

cudaStream_t prepare(Device device) {
  LATTICE_CUDA_CHECK(cudaSetDevice(device.index));
  return stream_of(device);
}

// ---- input gradient ------------------------------------------------------------------

// (K, C_in, C_out) -> (K, C_out, C_in), offsets reversed when `mirror` (a
// centred odd kernel: offset K-1-k is the negation of offset k).
template <class T>
__global__ void transpose_weight_kernel(const T* __restrict__ w, T* __restrict__ wt, std::int64_t volume,
                                        std::int64_t cin, std::int64_t cout, bool mirror) {
  LATTICE_GRID_LOOP(i, volume * cin * cout) {
    const std::int64_t ci = i % cin;
    const std::int64_t co = (i / cin) % cout;
    const std::int64_t k = i / (cin * cout);
    const std::int64_t src_k = mirror ? volume - 1 - k : k;
    wt[i] = w[(src_k * cin + ci) * cout + co];
  }
}

Array transposed_weight(const Array& w_km, bool mirror, cudaStream_t stream) {
  Array wt = Array::empty(Shape{w_km.dim(0), w_km.dim(2), w_km.dim(1)}, w_km.dtype(), w_km.device());
  const std::int64_t n = w_km.numel();
  if (n == 0) return wt;
  visit_float_device(w_km.dtype(), [&]<class T>() {
    transpose_weight_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(w_km), ptr<T>(wt), w_km.dim(0), w_km.dim(1), w_km.dim(2), mirror);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
  return wt;
}

// A submanifold relation with a centred odd kernel is its own reverse with
// the offsets mirrored: input row i reaches output o through offset k exactly
// when o reaches i through K-1-k.
bool self_reverse(const Relation& rel) {
  return rel.kind() == RelationKind::submanifold && rel.spec().is_centered_submanifold();
}

// ---- weight gradient -----------------------------------------------------------------

struct WeightGradArgs {
  const std::int32_t* koff;  // (K + 1) kernel CSR offsets; null: identity over [0, *rows)
  const std::int32_t* eids;
  const std::int32_t* in_rows;
  const std::int32_t* out_rows;
  const std::int32_t* rows;
  std::int64_t x_capacity;
  std::int64_t volume, cin, cout;
  int slices;
};

// out: (slices, K, C_in, C_out) partials (or dw itself when slices == 1).
template <class T>
__global__ void weight_grad_kernel(const T* __restrict__ x, const T* __restrict__ dy, compute_t<T>* __restrict__ out,
                                   WeightGradArgs a) {
  using A = compute_t<T>;
  __shared__ A xs[k_tile][k_tile + 1];  // [edge][ci]
  __shared__ A ds[k_tile][k_tile + 1];  // [edge][co]
  const std::int64_t k = blockIdx.z / a.slices;
  const std::int64_t s = blockIdx.z % a.slices;
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const std::int64_t ci0 = std::int64_t{blockIdx.y} * k_tile, co0 = std::int64_t{blockIdx.x} * k_tile;
  std::int64_t begin = 0, count = 0;
  if (a.koff != nullptr) {
    begin = a.koff[k];
    count = a.koff[k + 1] - begin;
  } else {
    count = read_count(a.rows, a.x_capacity);
  }
  const std::int64_t lo = count * s / a.slices, hi = count * (s + 1) / a.slices;
  A acc = 0;
  for (std::int64_t e0 = lo; e0 < hi; e0 += k_tile) {
    // Thread (ty, tx) stages edge e0 + ty: x channel ci0 + tx and dy channel co0 + tx.
    const std::int64_t e = e0 + ty;
    A xv = 0, dv = 0;
    if (e < hi) {
      std::int64_t i = e, o = e;
      if (a.koff != nullptr) {
        const std::int32_t id = a.eids[begin + e];
        i = a.in_rows[id];
        o = a.out_rows[id];
      }
      if (ci0 + tx < a.cin) xv = load(x[i * a.cin + ci0 + tx]);
      if (co0 + tx < a.cout) dv = load(dy[o * a.cout + co0 + tx]);
    }
    xs[ty][tx] = xv;
    ds[ty][tx] = dv;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < k_tile; ++j) acc += xs[j][ty] * ds[j][tx];
    __syncthreads();
  }
  const std::int64_t ci = ci0 + ty, co = co0 + tx;
  if (ci < a.cin && co < a.cout) out[((s * a.volume + k) * a.cin + ci) * a.cout + co] = acc;
}

// dw[j] = sum over slices s (ascending) of partial[s, j].
template <class A>
__global__ void sum_slices_kernel(const A* __restrict__ partial, A* __restrict__ dw, std::int64_t n, int slices) {
  LATTICE_GRID_LOOP(j, n) {
    A acc = 0;
    for (int s = 0; s < slices; ++s) acc += partial[s * n + j];
    dw[j] = acc;
  }
}

// Edge slices per offset: enough blocks to fill the device at small channel
// counts, bounded partial memory (about 4M accumulators) at large ones. A
// function of the shapes only, so results never depend on the data.
int slices_for(std::int64_t volume, std::int64_t cin, std::int64_t cout) {
  const std::int64_t per = std::max<std::int64_t>(1, volume * cin * cout);
  std::int64_t s = (std::int64_t{1} << 22) / per;
  s = std::clamp<std::int64_t>(s, 1, 32);
  s = std::min<std::int64_t>(s, std::max<std::int64_t>(1, 65535 / std::max<std::int64_t>(volume, 1)));
  return static_cast<int>(s);
}

// (in row, out row) of every edge in kernel-CSR order, for the tensor-core route.
__global__ void edge_pairs_kernel(const std::int32_t* __restrict__ eids, const std::int32_t* __restrict__ in_rows,
                                  const std::int32_t* __restrict__ out_rows, const std::int32_t* __restrict__ counts,
                                  std::int64_t capacity, std::int32_t* __restrict__ pairs) {
  const std::int64_t n = read_count(counts, capacity);
  LATTICE_GRID_LOOP(e, n) {
    const std::int32_t id = eids[e];
    pairs[2 * e] = in_rows[id];
    pairs[2 * e + 1] = out_rows[id];
  }
}

// Tensor-core route: per-slice float32 partials, then the fixed-order slice sum.
void run_weight_grad_mma(const Array& x, const Array& dy, Array& dw, const WeightGradArgs& a, const std::int32_t* pairs,
                         cudaStream_t stream) {
  WgradLaunch p;
  p.x = x.raw();
  p.dy = dy.raw();
  p.pairs = pairs;
  p.koff = a.koff;
  p.rows = a.rows;
  p.x_capacity = a.x_capacity;
  p.volume = static_cast<int>(a.volume);
  p.cin = static_cast<int>(a.cin);
  p.cout = static_cast<int>(a.cout);
  p.slices = wgrad_mma_slices(p.volume, p.cin, p.cout);
  p.dtype = x.dtype();
  p.stream = stream;
  const std::int64_t n = dw.numel();
  Array partial;
  p.out = ptr<float>(dw);
  if (p.slices > 1) {
    partial = Array::empty(Shape{p.slices * n}, DType::f32, dw.device());
    p.out = ptr<float>(partial);
  }
  launch_wgrad_mma(p);
  if (p.slices > 1) {
    sum_slices_kernel<float>
        <<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const float>(partial), ptr<float>(dw), n, p.slices);
    LATTICE_CUDA_LAUNCH_CHECK();
  }
}

void run_weight_grad(const Array& x, const Array& dy, Array& dw, WeightGradArgs a, const Relation* rel = nullptr) {
  const cudaStream_t stream = prepare(x.device());
  const std::int64_t n = dw.numel();
  if (n == 0) return;
  if (dw.dtype() == DType::f32 && a.cin <= INT32_MAX && a.cout <= INT32_MAX &&
      wgrad_mma_supported(x.dtype(), static_cast<int>(a.cin), static_cast<int>(a.cout), x.raw(), dy.raw())) {
    Array pairs;
    if (rel != nullptr) {
      pairs = Array::empty(Shape{rel->edge_capacity(), 2}, DType::i32, x.device());
      if (rel->edge_capacity() > 0) {
        edge_pairs_kernel<<<grid_for(rel->edge_capacity(), k_threads), k_threads, 0, stream>>>(
            a.eids, a.in_rows, a.out_rows, ptr<const std::int32_t>(rel->counts()), rel->edge_capacity(),
            ptr<std::int32_t>(pairs));
        LATTICE_CUDA_LAUNCH_CHECK();
      }
    }
    run_weight_grad_mma(x, dy, dw, a, rel != nullptr ? ptr<const std::int32_t>(pairs) : nullptr, stream);
    return;
  }
  a.slices = slices_for(a.volume, a.cin, a.cout);
  visit_float_device(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    Array partial;
    A* out = ptr<A>(dw);
    if (a.slices > 1) {
      partial = Array::empty(Shape{a.slices * n}, dw.dtype(), dw.device());
      out = ptr<A>(partial);
    }
    const dim3 block(k_tile, k_tile);
    const dim3 grid(static_cast<unsigned>((a.cout + k_tile - 1) / k_tile),
                    static_cast<unsigned>((a.cin + k_tile - 1) / k_tile), static_cast<unsigned>(a.volume * a.slices));
    weight_grad_kernel<T><<<grid, block, 0, stream>>>(ptr<const T>(x), ptr<const T>(dy), out, a);
    LATTICE_CUDA_LAUNCH_CHECK();
    if (a.slices > 1) {
      sum_slices_kernel<A>
          <<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const A>(partial), ptr<A>(dw), n, a.slices);
      LATTICE_CUDA_LAUNCH_CHECK();
    }
  });
}

// ---- bias gradient -------------------------------------------------------------------

template <class T>
__global__ void bias_grad_kernel(const T* __restrict__ dy, T* __restrict__ db, const std::int32_t* __restrict__ rows,
                                 std::int64_t capacity, std::int64_t c) {
  using A = compute_t<T>;
  __shared__ A part[k_threads];
  const std::int64_t n = read_count(rows, capacity);
  for (std::int64_t j = blockIdx.x; j < c; j += gridDim.x) {
    A acc = 0;
    for (std::int64_t r = threadIdx.x; r < n; r += k_threads) acc += load(dy[r * c + j]);
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = k_threads / 2; half > 0; half /= 2) {
      if (static_cast<int>(threadIdx.x) < half) part[threadIdx.x] += part[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) db[j] = store<T>(part[0]);
    __syncthreads();
  }
}

// ---- normalized forms ----------------------------------------------------------------

template <class T>
__global__ void normalized_terms_kernel(const T* __restrict__ dy, const T* __restrict__ num,
                                        const compute_t<T>* __restrict__ den, T* __restrict__ g,
                                        compute_t<T>* __restrict__ dden, const std::int32_t* __restrict__ rows,
                                        std::int64_t capacity, std::int64_t c, compute_t<T> eps) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(rows, capacity);
  LATTICE_GRID_LOOP(i, capacity * c) {
    if (i / c >= n) {
      g[i] = store<T>(A{0});
      dden[i] = A{0};
      continue;
    }
    const A inv = A{1} / sqrt(den[i] + eps);
    const A gv = load(dy[i]);
    g[i] = store<T>(gv * inv);
    dden[i] = A(-0.5) * gv * load(num[i]) * inv * inv * inv;
  }
}

template <class T>
__global__ void weight_combine_kernel(const compute_t<T>* __restrict__ a, const compute_t<T>* __restrict__ b,
                                      const T* __restrict__ w, compute_t<T>* __restrict__ out, std::int64_t cin,
                                      std::int64_t cout, std::int64_t n) {
  using A = compute_t<T>;
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t co = i % cout;
    const std::int64_t k = i / (cin * cout);
    out[i] = a[i] + A{2} * load(w[i]) * b[k * cout + co];
  }
}

// (K, C_in, C_out) -> (C_out, K, C_in): one thread per destination element.
template <class T>
__global__ void from_kernel_major_kernel(const T* __restrict__ src, T* __restrict__ dst, std::int64_t volume,
                                         std::int64_t cin, std::int64_t cout) {
  LATTICE_GRID_LOOP(i, volume * cin * cout) {
    const std::int64_t ci = i % cin;
    const std::int64_t k = (i / cin) % volume;
    const std::int64_t co = i / (cin * volume);
    dst[i] = src[(k * cin + ci) * cout + co];
  }
}

}  // namespace

void conv_input_grad(const Relation& rel, const Array& dy, const Array& weight_km, const Array& in_count, Array& dx) {
  const cudaStream_t stream = prepare(dy.device());
  // The kernels write every active input row (zeros where no edge reaches);
  // rows past the input's count are capacity and stay unwritten.
  if (dx.numel() == 0) return;
  if (dy.dim(1) == 0) {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), stream));
    return;
  }
  const bool mirror = self_reverse(rel);
  const Array wt = transposed_weight(weight_km, mirror, stream);
  if (mirror) {
    // The forward's own (sorted) map and route, run backwards.
    conv_relation(rel, dy, wt, std::nullopt, dx, ConvOptions{});
    return;
  }
  const InputGemmMap& m = rel.input_gemm_map();
  ConvLaunch p;
  p.x = dy.raw();
  p.w = wt.raw();
  p.y = dx.raw();
  p.map = ptr<const std::int32_t>(m.in_out_map);
  p.masks = ptr<const std::uint32_t>(m.masks);
  p.words = m.mask_words;
  p.count = ptr<const std::int32_t>(in_count);
  p.rows_cap = dx.dim(0);
  p.cin = static_cast<int>(dy.dim(1));
  p.cout = static_cast<int>(dx.dim(1));
  p.volume = static_cast<int>(rel.volume());
  p.dtype = dy.dtype();
  p.stream = stream;
  if (conv_mma_supported(p)) {
    launch_conv_mma(p, tuning::mma_config(p.cin, p.cout, p.rows_cap), false);
  } else {
    launch_conv_simt(p);
  }
}

void pointwise_input_grad(const Array& dy, const Array& rows, const Array& weight_km, Array& dx) {
  const cudaStream_t stream = prepare(dy.device());
  if (dx.numel() == 0) return;
  if (dy.dim(1) == 0) {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), stream));
    return;
  }
  conv_pointwise(dy, rows, transposed_weight(weight_km, false, stream), std::nullopt, dx, ConvOptions{});
}

void conv_weight_grad(const Relation& rel, const Array& x, const Array& dy, Array& dw) {
  const KernelCsr& kcsr = rel.kernel_csr();
  WeightGradArgs a{};
  a.koff = ptr<const std::int32_t>(kcsr.offsets);
  a.eids = ptr<const std::int32_t>(kcsr.edge_ids);
  a.in_rows = ptr<const std::int32_t>(rel.in_rows());
  a.out_rows = ptr<const std::int32_t>(rel.out_rows());
  a.x_capacity = x.dim(0);
  a.volume = rel.volume();
  a.cin = x.dim(1);
  a.cout = dy.dim(1);
  run_weight_grad(x, dy, dw, a, &rel);
}

void pointwise_weight_grad(const Array& x, const Array& dy, const Array& rows, Array& dw) {
  WeightGradArgs a{};
  a.rows = ptr<const std::int32_t>(rows);
  a.x_capacity = x.dim(0);
  a.volume = 1;
  a.cin = x.dim(1);
  a.cout = dy.dim(1);
  run_weight_grad(x, dy, dw, a);
}

void bias_grad(const Array& dy, const Array& rows, Array& db) {
  const cudaStream_t stream = prepare(dy.device());
  const std::int64_t c = dy.dim(1);
  if (c == 0) return;
  visit_float_device(dy.dtype(), [&]<class T>() {
    bias_grad_kernel<T><<<static_cast<unsigned>(std::min<std::int64_t>(c, 65535)), k_threads, 0, stream>>>(
        ptr<const T>(dy), ptr<T>(db), ptr<const std::int32_t>(rows), dy.dim(0), c);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void normalized_grad_terms(const Array& dy, const Array& num, const Array& den, double eps, const Array& rows, Array& g,
                           Array& dden) {
  const cudaStream_t stream = prepare(dy.device());
  const std::int64_t capacity = dy.dim(0), c = dy.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(dy.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    normalized_terms_kernel<T><<<grid_for(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(dy), ptr<const T>(num), ptr<const A>(den), ptr<T>(g), ptr<A>(dden), ptr<const std::int32_t>(rows),
        capacity, c, static_cast<A>(eps));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void normalized_weight_combine(const Array& dw_num, const Array& dw_den, const Array& weight_km, Array& out) {
  const cudaStream_t stream = prepare(weight_km.device());
  const std::int64_t n = weight_km.numel();
  if (n == 0) return;
  visit_float_device(weight_km.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    weight_combine_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<const A>(dw_num), ptr<const A>(dw_den), ptr<const T>(weight_km), ptr<A>(out), weight_km.dim(1),
        weight_km.dim(2), n);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

Array from_kernel_major(const Array& km, const Shape& shape) {
  if (shape.ndim() == 3) return km;
  const cudaStream_t stream = prepare(km.device());
  Array out = Array::empty(shape, km.dtype(), km.device());
  const std::int64_t n = km.numel();
  if (n == 0) return out;
  visit_float_device(km.dtype(), [&]<class T>() {
    from_kernel_major_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const T>(km), ptr<T>(out),
                                                                                  km.dim(0), km.dim(1), km.dim(2));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace lattice::cuda
