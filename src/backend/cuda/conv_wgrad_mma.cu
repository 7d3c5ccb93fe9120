// Tensor-core weight gradient of a sparse convolution:
//
//   dW[k] (C_in x C_out) = sum over offset k's edges e of x[in_e]^T dy[out_e]
//
// a GEMM per offset whose reduction dimension is the edge list. A CTA owns a
// (BM input channels) x (BN output channels) tile of one offset and one of
// `slices` equal slices of that offset's edges (kernel-CSR order). Per stage
// it gathers BE edges' x rows and dy rows into shared memory with cp.async
// (zero fill past the slice or the channels) and multiplies x^T dy on the
// tensor cores: mma m16n8k16 for float16 / bfloat16 (ldmatrix.trans turns the
// edge-major x tile into the row-major A fragment), 3xTF32 m16n8k8 for
// float32 (float32 accuracy). Accumulation is float32 in registers; each CTA
// writes its tile of the per-slice partial once, and a fixed-order pass sums
// the slices (no atomics: bitwise reproducible).
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/mma.cuh"

namespace lattice::cuda {

namespace {

constexpr int k_be = 32;     // edges per pipeline stage
constexpr int k_stages = 3;  // cp.async pipeline depth

// Shared-memory row padding: 16 bytes for the 16-bit types (conflict-free
// ldmatrix); 8 floats for float32, so that the scalar fragment loads of the
// 32 lanes (rows t, columns g) fall in 32 different banks.
template <class T>
constexpr int pad_elems = std::is_same_v<T, float> ? 8 : 16 / static_cast<int>(sizeof(T));

template <class T, int BM, int BN>
constexpr int smem_bytes() {
  return k_stages * k_be * ((BM + pad_elems<T>)+(BN + pad_elems<T>)) * static_cast<int>(sizeof(T));
}

template <class T, int BM, int BN, int WM, int WN>
__global__ void __launch_bounds__(WM* WN * 32) k_wgrad_mma(WgradLaunch p) {
  constexpr int threads = WM * WN * 32;
  constexpr int warp_m = BM / WM, warp_n = BN / WN;
  constexpr int mt = warp_m / 16, nt = warp_n / 8;
  constexpr int vec = 16 / sizeof(T);
  constexpr int xs_stride = BM + pad_elems<T>, ds_stride = BN + pad_elems<T>;
  constexpr bool tf32 = std::is_same_v<T, float>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* xs = reinterpret_cast<T*>(smem_raw);    // [S][BE][xs_stride]: x rows of the staged edges
  T* ds = xs + k_stages * k_be * xs_stride;  // [S][BE][ds_stride]: dy rows

  const int k = static_cast<int>(blockIdx.z) / p.slices;
  const int s = static_cast<int>(blockIdx.z) % p.slices;
  const int ci0 = static_cast<int>(blockIdx.y) * BM, co0 = static_cast<int>(blockIdx.x) * BN;
  std::int64_t begin = 0, count = 0;
  if (p.koff != nullptr) {
    begin = p.koff[k];
    count = p.koff[k + 1] - begin;
  } else {
    count = device::read_count(p.rows, p.x_capacity);
  }
  const std::int64_t lo = count * s / p.slices, hi = count * (s + 1) / p.slices;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / WN, wn = warp % WN;
  const T* x = static_cast<const T*>(p.x);
  const T* dy = static_cast<const T*>(p.dy);

  // Each thread copies fixed chunks of a stage: kx chunks of x rows and kd of
  // dy rows. Their edges' row indices are loaded into registers one stage
  // ahead (fetch_rows), so the dependent index load is off the critical path.
  constexpr int kx = k_be * (BM / vec) / threads, kd = k_be * (BN / vec) / threads;
  static_assert(kx * threads == k_be * (BM / vec) && kd * threads == k_be * (BN / vec));
  struct Rows {
    std::int32_t in[kx], out[kd];
  };
  auto fetch_rows = [&](std::int64_t e0, Rows& rows) {
#pragma unroll
    for (int u = 0; u < kx; ++u) {
      const std::int64_t e = e0 + (tid + u * threads) / (BM / vec);
      rows.in[u] = e < hi ? (p.pairs ? p.pairs[2 * (begin + e)] : static_cast<std::int32_t>(e)) : -1;
    }
#pragma unroll
    for (int u = 0; u < kd; ++u) {
      const std::int64_t e = e0 + (tid + u * threads) / (BN / vec);
      rows.out[u] = e < hi ? (p.pairs ? p.pairs[2 * (begin + e) + 1] : static_cast<std::int32_t>(e)) : -1;
    }
  };
  auto load_stage = [&](int slot, const Rows& rows) {
    T* xd = xs + slot * k_be * xs_stride;
    T* dd = ds + slot * k_be * ds_stride;
#pragma unroll
    for (int u = 0; u < kx; ++u) {
      const int q = tid + u * threads;
      const int r = q / (BM / vec), cc = (q % (BM / vec)) * vec;
      const bool valid = rows.in[u] >= 0 && ci0 + cc < p.cin;
      const T* src = valid ? x + static_cast<std::int64_t>(rows.in[u]) * p.cin + ci0 + cc : x;
      device::cp_async_16(xd + r * xs_stride + cc, src, valid);
    }
#pragma unroll
    for (int u = 0; u < kd; ++u) {
      const int q = tid + u * threads;
      const int r = q / (BN / vec), cc = (q % (BN / vec)) * vec;
      const bool valid = rows.out[u] >= 0 && co0 + cc < p.cout;
      const T* src = valid ? dy + static_cast<std::int64_t>(rows.out[u]) * p.cout + co0 + cc : dy;
      device::cp_async_16(dd + r * ds_stride + cc, src, valid);
    }
  };

  float acc[mt][nt][4];
#pragma unroll
  for (int a = 0; a < mt; ++a)
#pragma unroll
    for (int b = 0; b < nt; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.0f;

  auto compute = [&](int slot) {
    const T* xa = xs + slot * k_be * xs_stride;
    const T* db = ds + slot * k_be * ds_stride;
    if constexpr (!tf32) {
#pragma unroll
      for (int kk = 0; kk < k_be; kk += 16) {
        // A = x^T (channels x edges): the tile is stored edge-major, so the
        // transposing ldmatrix yields the row-major fragment.
        std::uint32_t af[mt][4];
#pragma unroll
        for (int a = 0; a < mt; ++a) {
          const int row = kk + (lane % 8) + (lane / 16) * 8;
          const int col = wm * warp_m + a * 16 + ((lane / 8) % 2) * 8;
          device::ldmatrix_x4_trans(af[a], xa + row * xs_stride + col);
        }
#pragma unroll
        for (int b = 0; b < nt; b += 2) {
          std::uint32_t bf[4];
          device::ldmatrix_x4_trans(bf, db + (kk + (lane % 16)) * ds_stride + wn * warp_n + b * 8 + (lane / 16) * 8);
#pragma unroll
          for (int a = 0; a < mt; ++a) {
            device::mma_16816<T>(acc[a][b], af[a], bf[0], bf[1]);
            device::mma_16816<T>(acc[a][b + 1], af[a], bf[2], bf[3]);
          }
        }
      }
    } else {
      const int g = lane / 4, t = lane % 4;
#pragma unroll
      for (int kk = 0; kk < k_be; kk += 8) {
        std::uint32_t ah[mt][4], al[mt][4];
#pragma unroll
        for (int a = 0; a < mt; ++a) {
          const int m = wm * warp_m + a * 16 + g;
          const float v[4] = {xa[(kk + t) * xs_stride + m], xa[(kk + t) * xs_stride + m + 8],
                              xa[(kk + t + 4) * xs_stride + m], xa[(kk + t + 4) * xs_stride + m + 8]};
#pragma unroll
          for (int e = 0; e < 4; ++e) device::split_tf32(v[e], ah[a][e], al[a][e], true);
        }
#pragma unroll
        for (int b = 0; b < nt; ++b) {
          const int n = wn * warp_n + b * 8 + g;
          std::uint32_t bh0, bl0, bh1, bl1;
          device::split_tf32(db[(kk + t) * ds_stride + n], bh0, bl0, true);
          device::split_tf32(db[(kk + t + 4) * ds_stride + n], bh1, bl1, true);
#pragma unroll
          for (int a = 0; a < mt; ++a) {
            device::mma_1688_tf32(acc[a][b], al[a], bh0, bh1);
            device::mma_1688_tf32(acc[a][b], ah[a], bl0, bl1);
            device::mma_1688_tf32(acc[a][b], ah[a], bh0, bh1);
          }
        }
      }
    }
  };

  const int total = static_cast<int>((hi - lo + k_be - 1) / k_be);
  std::int64_t fetch = lo;
  Rows rows;
#pragma unroll
  for (int st = 0; st < k_stages - 1; ++st) {
    if (fetch < hi) {
      fetch_rows(fetch, rows);
      load_stage(st, rows);
      fetch += k_be;
    }
    device::cp_async_commit();
  }
  if (fetch < hi) fetch_rows(fetch, rows);  // consumed in the first iteration
  for (int t = 0; t < total; ++t) {
    device::cp_async_wait<k_stages - 2>();
    __syncthreads();
    if (fetch < hi) {
      load_stage((t + k_stages - 1) % k_stages, rows);
      fetch += k_be;
      if (fetch < hi) fetch_rows(fetch, rows);  // the next stage's indices, in flight during compute
    }
    device::cp_async_commit();
    compute(t % k_stages);
  }
  device::cp_async_wait<0>();

  // Every CTA writes its whole tile (zeros for an empty slice), once.
  float* out = p.out + (static_cast<std::int64_t>(s) * p.volume + k) * p.cin * p.cout;
#pragma unroll
  for (int a = 0; a < mt; ++a) {
#pragma unroll
    for (int hi2 = 0; hi2 < 2; ++hi2) {
      const int ci = ci0 + wm * warp_m + a * 16 + lane / 4 + hi2 * 8;
      if (ci >= p.cin) continue;
#pragma unroll
      for (int b = 0; b < nt; ++b) {
        const int co = co0 + wn * warp_n + b * 8 + (lane % 4) * 2;
        if (co >= p.cout) continue;  // C_out is even: co + 1 is in range too
        *reinterpret_cast<float2*>(out + static_cast<std::int64_t>(ci) * p.cout + co) =
            make_float2(acc[a][b][hi2 * 2], acc[a][b][hi2 * 2 + 1]);
      }
    }
  }
}

template <class T, int BM, int BN>
void launch_tile(const WgradLaunch& p) {
  constexpr int bytes = smem_bytes<T, BM, BN>();
  auto kernel = k_wgrad_mma<T, BM, BN, 2, 2>;
  static const bool configured = [&] {
    LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)configured;
  const dim3 grid(static_cast<unsigned>((p.cout + BN - 1) / BN), static_cast<unsigned>((p.cin + BM - 1) / BM),
                  static_cast<unsigned>(p.volume * p.slices));
  kernel<<<grid, 128, bytes, p.stream>>>(p);
  LATTICE_CUDA_LAUNCH_CHECK();
}

// 32-wide tiles for narrow layers (no half-empty tiles), 64 otherwise.
template <class T>
void launch_typed(const WgradLaunch& p) {
  const bool narrow_m = p.cin <= 32, narrow_n = p.cout <= 32;
  if (narrow_m && narrow_n) return launch_tile<T, 32, 32>(p);
  if (narrow_m) return launch_tile<T, 32, 64>(p);
  if (narrow_n) return launch_tile<T, 64, 32>(p);
  launch_tile<T, 64, 64>(p);
}

bool aligned16(const void* q) { return (reinterpret_cast<std::uintptr_t>(q) & 15u) == 0; }

}  // namespace

bool wgrad_mma_supported(DType dtype, int cin, int cout, const void* x, const void* dy) {
  const int align = dtype == DType::f32 ? 4 : 8;  // 16-byte rows
  return (dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f32) && cin > 0 && cout > 0 &&
         cin % align == 0 && cout % align == 0 && aligned16(x) && aligned16(dy);
}

int wgrad_mma_slices(int volume, int cin, int cout) {
  auto tiles_of = [](int c) { return c <= 32 ? 1 : (c + 63) / 64; };  // launch_typed's tile widths
  const std::int64_t tiles = std::int64_t{tiles_of(cin)} * tiles_of(cout);
  // About 2048 CTAs (a few waves on an H100), at most 64 slices, at most 4M
  // partial accumulators. Shapes only: results never depend on the data.
  std::int64_t s = (2048 + volume * tiles - 1) / (volume * tiles);
  s = std::min<std::int64_t>(s, (std::int64_t{1} << 22) / std::max<std::int64_t>(1, std::int64_t{volume} * cin * cout));
  s = std::min<std::int64_t>(s, 65535 / std::max(volume, 1));
  return static_cast<int>(std::clamp<std::int64_t>(s, 1, 64));
}

void launch_wgrad_mma(const WgradLaunch& p) {
  if (p.volume == 0 || p.cin == 0 || p.cout == 0) return;
  switch (p.dtype) {
    case DType::f16:
      launch_typed<__half>(p);
      break;
    case DType::bf16:
      launch_typed<__nv_bfloat16>(p);
      break;
    default:
      launch_typed<float>(p);
      break;
  }
}

}  // namespace lattice::cuda
