// Tensor-core implicit-GEMM convolution (mma.sync m16n8k16, float32
// accumulation) for float16 / bfloat16 features.
//
// A CTA owns `bm` output rows (in sorted-map order when a sorted map is used)
// and `bn` output channels. Its rows' occupancy masks are ORed into a tile
// mask, and only offsets some row uses are visited (with a sorted map the
// rows of a tile share most of their offsets, so little work is wasted). For
// each visited offset k and each 32-wide chunk of C_in, the input rows named
// by the map are gathered into shared memory with cp.async (zero fill for
// missing neighbours) together with the weight slice W[k][chunk], double
// buffered, and multiplied with ldmatrix + mma.sync. Each output element is
// written once, by one thread.
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/mma.cuh"
#include "backend/cuda/tuning/conv_tiles.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_bk = tuning::k_mma_bk;
constexpr int k_pad = 8;  // halves of padding per shared-memory row: conflict-free ldmatrix
constexpr int k_max_words = 128;  // K <= 4096

template <class T, int BM, int BN, int WM, int WN>
__global__ void __launch_bounds__(WM* WN * 32) k_conv_mma(ConvLaunch p) {
  constexpr int threads = WM * WN * 32;
  constexpr int warp_m = BM / WM, warp_n = BN / WN;  // 32 x 32
  constexpr int mt = warp_m / 16, nt = warp_n / 8;
  __shared__ __align__(16) T as[2][BM][k_bk + k_pad];
  __shared__ __align__(16) T bs[2][k_bk][BN + k_pad];
  __shared__ std::uint32_t tile_mask[k_max_words];

  const std::int64_t count = device::read_count(p.count, p.rows_cap);
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * BM;
  if (row0 >= count) return;
  const int col0 = blockIdx.y * BN;
  const int tid = threadIdx.x;
  const int lane = tid % 32, warp = tid / 32;
  const int wm = warp / WN, wn = warp % WN;

  // Offsets used by any row of the tile.
  for (int w = tid; w < p.words; w += threads) {
    std::uint32_t bits = 0;
    if (p.tile_masks != nullptr && p.tile_rows == BM) {
      bits = p.tile_masks[static_cast<std::int64_t>(blockIdx.x) * p.words + w];
    } else if (p.masks != nullptr) {
      for (int r = 0; r < BM; ++r) {
        const std::int64_t j = row0 + r;
        if (j < count) bits |= p.masks[j * p.words + w];
      }
    } else {
      bits = w == 0 ? 1u : 0u;  // identity map: the single offset 0
    }
    tile_mask[w] = bits;
  }
  __syncthreads();
  auto next_offset = [&](int from) -> int {
    for (int k = from; k < p.volume; ++k) {
      const std::uint32_t word = tile_mask[k / 32] >> (k % 32);
      if (word == 0) {
        k = (k / 32) * 32 + 31;  // skip the rest of this word
        continue;
      }
      return k + __ffs(word) - 1;
    }
    return p.volume;
  };

  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  auto load_stage = [&](int buf, int k, int c0) {
    // A: BM rows x 32 channels = BM * 4 chunks of 8 halves.
    for (int q = tid; q < BM * (k_bk / 8); q += threads) {
      const int r = q / (k_bk / 8), cc = (q % (k_bk / 8)) * 8;
      const std::int64_t j = row0 + r;
      std::int32_t i = -1;
      if (j < count) i = p.map ? p.map[j * p.volume + k] : static_cast<std::int32_t>(j);
      const bool valid = i >= 0 && c0 + cc < p.cin;
      const T* src = valid ? x + static_cast<std::int64_t>(i) * p.cin + c0 + cc : x;
      device::cp_async_16(&as[buf][r][cc], src, valid);
    }
    // B: 32 channels x BN outputs = 32 * BN / 8 chunks.
    const T* wk = w + static_cast<std::int64_t>(k) * p.cin * p.cout;
    for (int q = tid; q < k_bk * (BN / 8); q += threads) {
      const int c = q / (BN / 8), nn = (q % (BN / 8)) * 8;
      const bool valid = c0 + c < p.cin && col0 + nn < p.cout;
      const T* src = valid ? wk + static_cast<std::int64_t>(c0 + c) * p.cout + col0 + nn : w;
      device::cp_async_16(&bs[buf][c][nn], src, valid);
    }
  };

  float acc[mt][nt][4];
#pragma unroll
  for (int a = 0; a < mt; ++a)
#pragma unroll
    for (int b = 0; b < nt; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.0f;

  int k = next_offset(0);
  int c0 = 0;
  int buf = 0;
  if (k < p.volume) {
    load_stage(0, k, 0);
    device::cp_async_commit();
  }
  while (k < p.volume) {
    // Next stage: the next C_in chunk, or the first chunk of the next used offset.
    int nk = k, nc = c0 + k_bk;
    if (nc >= p.cin) {
      nc = 0;
      nk = next_offset(k + 1);
    }
    if (nk < p.volume) {
      load_stage(buf ^ 1, nk, nc);
      device::cp_async_commit();
      device::cp_async_wait<1>();
    } else {
      device::cp_async_wait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < k_bk; kk += 16) {
      std::uint32_t af[mt][4];
#pragma unroll
      for (int a = 0; a < mt; ++a) {
        device::ldmatrix_x4(af[a], &as[buf][wm * warp_m + a * 16 + (lane % 16)][kk + (lane / 16) * 8]);
      }
#pragma unroll
      for (int b = 0; b < nt; b += 2) {
        std::uint32_t bf[4];
        device::ldmatrix_x4_trans(bf, &bs[buf][kk + (lane % 16)][wn * warp_n + b * 8 + (lane / 16) * 8]);
#pragma unroll
        for (int a = 0; a < mt; ++a) {
          device::mma_16816<T>(acc[a][b], af[a], bf[0], bf[1]);
          device::mma_16816<T>(acc[a][b + 1], af[a], bf[2], bf[3]);
        }
      }
    }
    __syncthreads();
    k = nk;
    c0 = nc;
    buf ^= 1;
  }

  // Epilogue: bias, round once, two channels per store.
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int a = 0; a < mt; ++a) {
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const std::int64_t j = row0 + wm * warp_m + a * 16 + lane / 4 + hi * 8;
      if (j >= count) continue;
      const std::int64_t o = p.perm ? p.perm[j] : j;
#pragma unroll
      for (int b = 0; b < nt; ++b) {
        const int col = col0 + wn * warp_n + b * 8 + (lane % 4) * 2;
        if (col >= p.cout) continue;
        float v0 = acc[a][b][hi * 2], v1 = acc[a][b][hi * 2 + 1];
        if (bias) {
          v0 += device::load(bias[col]);
          v1 += device::load(bias[col + 1]);
        }
        T* dst = y + o * p.cout + col;
        dst[0] = device::store<T>(v0);
        dst[1] = device::store<T>(v1);
      }
    }
  }
}

template <class T, int C>
void launch_config(const ConvLaunch& p) {
  constexpr tuning::MmaTile t = tuning::k_mma_tiles[C];
  const dim3 grid(static_cast<unsigned>((p.rows_cap + t.bm - 1) / t.bm), static_cast<unsigned>((p.cout + t.bn - 1) / t.bn));
  k_conv_mma<T, t.bm, t.bn, t.warps_m, t.warps_n><<<grid, t.warps_m * t.warps_n * 32, 0, p.stream>>>(p);
  LATTICE_CUDA_LAUNCH_CHECK();
}

template <class T>
void launch_typed(const ConvLaunch& p, int config) {
  switch (config) {
    case 0: launch_config<T, 0>(p); break;
    case 1: launch_config<T, 1>(p); break;
    default: launch_config<T, 2>(p); break;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

}  // namespace

int conv_mma_configs() { return static_cast<int>(sizeof(tuning::k_mma_tiles) / sizeof(tuning::k_mma_tiles[0])); }

int conv_mma_tile_rows(int tile_config) { return tuning::k_mma_tiles[tile_config].bm; }

bool conv_mma_supported(const ConvLaunch& p) {
  return (p.dtype == DType::f16 || p.dtype == DType::bf16) && p.cin % 8 == 0 && p.cout % 8 == 0 && p.cin > 0 &&
         p.words <= k_max_words && aligned16(p.x) && aligned16(p.w) && aligned16(p.y);
}

void launch_conv_mma(const ConvLaunch& p, int tile_config) {
  if (p.rows_cap == 0 || p.cout == 0) return;
  if (p.dtype == DType::f16) {
    launch_typed<__half>(p, tile_config);
  } else {
    launch_typed<__nv_bfloat16>(p, tile_config);
  }
}

}  // namespace lattice::cuda
