// Tensor-core implicit-GEMM convolution.
//
//   float16 / bfloat16: mma.sync m16n8k16, float32 accumulation
//   float32:            mma.sync m16n8k8 on TF32 operands, either once
//                       (allow_tf32: TF32 precision) or as the 3xTF32 split
//                       a*b = ah*bh + ah*bl + al*bh (float32 accuracy)
//
// A CTA owns `bm` output rows (in sorted-map order when a sorted map is used)
// and `bn` output channels. Its rows' occupancy masks are ORed into a tile
// mask, and only offsets some row uses are visited. For each visited offset k
// and each `bk`-wide chunk of C_in, the input rows named by the map are
// gathered into shared memory with cp.async (zero fill for missing
// neighbours) together with the weight slice W[k][chunk], in a multi-stage
// pipeline, and multiplied on the tensor cores. The map entries of the next
// offset are read into registers a stage ahead. Each output element is written
// once, by one thread, in the epilogue (bias, rounding).
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/conv_epilogue.cuh"
#include "backend/cuda/device/mma.cuh"
#include "backend/cuda/tuning/conv_tiles.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_max_words = 128;  // K <= 4096

// Elements of padding per shared-memory row: 16 bytes keeps ldmatrix and the
// TF32 B-fragment loads free of bank conflicts.
template <class T>
constexpr int pad_elems = 16 / sizeof(T);

template <class T, int BM, int BN, int BK, int S>
constexpr int smem_bytes() {
  return S * (BM * (BK + pad_elems<T>)+BK * (BN + pad_elems<T>)) * static_cast<int>(sizeof(T));
}

template <class T, int BM, int BN, int WM, int WN, int BK, int S, bool Split>
__global__ void __launch_bounds__(WM* WN * 32) k_conv_mma(ConvLaunch p) {
  constexpr int threads = WM * WN * 32;
  constexpr int warp_m = BM / WM, warp_n = BN / WN;
  constexpr int mt = warp_m / 16, nt = warp_n / 8;
  constexpr int vec = 16 / sizeof(T);  // elements per 16-byte copy
  constexpr int a_stride = BK + pad_elems<T>, b_stride = BN + pad_elems<T>;
  constexpr bool tf32 = std::is_same_v<T, float>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* as = reinterpret_cast<T*>(smem_raw);  // [S][BM][a_stride]
  T* bs = as + S * BM * a_stride;          // [S][BK][b_stride]
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
    if (p.tile_masks != nullptr && BM % p.tile_rows == 0) {
      // The sorted map's tiles are p.tile_rows tall; a taller CTA ORs several.
      const int per = BM / p.tile_rows;
      const std::int64_t tiles = (p.rows_cap + p.tile_rows - 1) / p.tile_rows;
      for (int t = 0; t < per; ++t) {
        const std::int64_t tile = static_cast<std::int64_t>(blockIdx.x) * per + t;
        if (tile < tiles) bits |= p.tile_masks[tile * p.words + w];
      }
    } else if (p.masks != nullptr) {
      for (int r = 0; r < BM; ++r) {
        const std::int64_t j = row0 + r;
        if (j < count) bits |= p.masks[j * p.words + w];
      }
    } else if (p.map == nullptr) {
      bits = w == 0 ? 1u : 0u;  // identity map: the single offset 0
    } else {
      // No mask for this tile shape: visit every offset (missing rows read as zeros).
      const int remaining = p.volume - w * 32;
      bits = remaining >= 32 ? 0xffffffffu : ((1u << remaining) - 1u);
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
  // Each thread copies fixed chunks of the A tile; the input rows they gather
  // are loaded into registers one stage ahead (fetch_rows, only when the
  // offset changes), keeping the dependent map load off the critical path.
  constexpr int na = BM * (BK / vec) / threads;
  static_assert(na * threads == BM * (BK / vec));
  std::int32_t rows[na];
  auto fetch_rows = [&](int k) {
#pragma unroll
    for (int u = 0; u < na; ++u) {
      const std::int64_t j = row0 + (tid + u * threads) / (BK / vec);
      rows[u] = j < count ? (p.map ? p.map[j * p.volume + k] : static_cast<std::int32_t>(j)) : -1;
    }
  };
  auto load_stage = [&](int slot, int k, int c0) {
    T* a_dst = as + slot * BM * a_stride;
    T* b_dst = bs + slot * BK * b_stride;
#pragma unroll
    for (int u = 0; u < na; ++u) {
      const int q = tid + u * threads;
      const int r = q / (BK / vec), cc = (q % (BK / vec)) * vec;
      const bool valid = rows[u] >= 0 && c0 + cc < p.cin;
      const T* src = valid ? x + static_cast<std::int64_t>(rows[u]) * p.cin + c0 + cc : w;
      device::cp_async_16(a_dst + r * a_stride + cc, src, valid);
    }
    const T* wk = w + static_cast<std::int64_t>(k) * p.cin * p.cout;
    for (int q = tid; q < BK * (BN / vec); q += threads) {
      const int c = q / (BN / vec), nn = (q % (BN / vec)) * vec;
      const bool valid = c0 + c < p.cin && col0 + nn < p.cout;
      const T* src = valid ? wk + static_cast<std::int64_t>(c0 + c) * p.cout + col0 + nn : w;
      device::cp_async_16(b_dst + c * b_stride + nn, src, valid);
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
    const T* a_src = as + slot * BM * a_stride;
    const T* b_src = bs + slot * BK * b_stride;
    if constexpr (!tf32) {
#pragma unroll
      for (int kk = 0; kk < BK; kk += 16) {
        std::uint32_t af[mt][4];
#pragma unroll
        for (int a = 0; a < mt; ++a) {
          device::ldmatrix_x4(af[a], a_src + (wm * warp_m + a * 16 + (lane % 16)) * a_stride + kk + (lane / 16) * 8);
        }
#pragma unroll
        for (int b = 0; b < nt; b += 2) {
          std::uint32_t bf[4];
          device::ldmatrix_x4_trans(bf, b_src + (kk + (lane % 16)) * b_stride + wn * warp_n + b * 8 + (lane / 16) * 8);
#pragma unroll
          for (int a = 0; a < mt; ++a) {
            device::mma_16816<T>(acc[a][b], af[a], bf[0], bf[1]);
            device::mma_16816<T>(acc[a][b + 1], af[a], bf[2], bf[3]);
          }
        }
      }
    } else {
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        std::uint32_t ah[mt][4], al[mt][4];
#pragma unroll
        for (int a = 0; a < mt; ++a) {
          std::uint32_t raw[4];
          device::ldmatrix_x4(raw, a_src + (wm * warp_m + a * 16 + (lane % 16)) * a_stride + kk + (lane / 16) * 4);
#pragma unroll
          for (int e = 0; e < 4; ++e) device::split_tf32(__uint_as_float(raw[e]), ah[a][e], al[a][e], Split);
        }
#pragma unroll
        for (int b = 0; b < nt; ++b) {
          const int n = wn * warp_n + b * 8 + lane / 4;
          const float b0 = b_src[(kk + lane % 4) * b_stride + n];
          const float b1 = b_src[(kk + lane % 4 + 4) * b_stride + n];
          std::uint32_t bh0, bl0, bh1, bl1;
          device::split_tf32(b0, bh0, bl0, Split);
          device::split_tf32(b1, bh1, bl1, Split);
#pragma unroll
          for (int a = 0; a < mt; ++a) {
            if constexpr (Split) {
              device::mma_1688_tf32(acc[a][b], al[a], bh0, bh1);
              device::mma_1688_tf32(acc[a][b], ah[a], bl0, bl1);
            }
            device::mma_1688_tf32(acc[a][b], ah[a], bh0, bh1);
          }
        }
      }
    }
  };

  // The pipeline walks stages (k, c0): C_in chunks of each used offset.
  int fetch_k = next_offset(0), fetch_c = 0;
  auto advance = [&](int& k, int& c0) {
    c0 += BK;
    if (c0 >= p.cin) {
      c0 = 0;
      k = next_offset(k + 1);
    }
  };
  int chunks = (p.cin + BK - 1) / BK;
  int total = 0;
  for (int wd = 0; wd < p.words; ++wd) total += __popc(tile_mask[wd]);
  total *= chunks;
  int rows_k = -1;  // the offset whose rows `rows` holds
  auto prefetch = [&] {
    if (fetch_k < p.volume && fetch_k != rows_k) {
      fetch_rows(fetch_k);
      rows_k = fetch_k;
    }
  };
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (fetch_k < p.volume) {
      prefetch();
      load_stage(s, fetch_k, fetch_c);
      advance(fetch_k, fetch_c);
    }
    device::cp_async_commit();
  }
  prefetch();  // consumed in the first iteration
  for (int t = 0; t < total; ++t) {
    device::cp_async_wait<S - 2>();
    __syncthreads();
    if (fetch_k < p.volume) {
      load_stage((t + S - 1) % S, fetch_k, fetch_c);
      advance(fetch_k, fetch_c);
      prefetch();  // the next offset's rows, in flight during compute
    }
    device::cp_async_commit();
    compute(t % S);
  }
  device::cp_async_wait<0>();

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
        v0 = device::epilogue<T>(p, v0, o, col);
        v1 = device::epilogue<T>(p, v1, o, col + 1);
        T* dst = y + o * p.cout + col;
        if constexpr (tf32) {
          *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
        } else {
          T pair[2] = {device::store<T>(v0), device::store<T>(v1)};
          *reinterpret_cast<std::uint32_t*>(dst) = *reinterpret_cast<std::uint32_t*>(pair);
        }
      }
    }
  }
}

template <class T, int C, bool Split>
void launch_config(const ConvLaunch& p) {
  constexpr tuning::MmaTile t = tuning::k_mma_tiles[C];
  constexpr int bytes = smem_bytes<T, t.bm, t.bn, t.bk, t.stages>();
  auto kernel = k_conv_mma<T, t.bm, t.bn, t.warps_m, t.warps_n, t.bk, t.stages, Split>;
  static bool configured = [&] {
    LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)configured;
  const dim3 grid(static_cast<unsigned>((p.rows_cap + t.bm - 1) / t.bm),
                  static_cast<unsigned>((p.cout + t.bn - 1) / t.bn));
  kernel<<<grid, t.warps_m * t.warps_n * 32, bytes, p.stream>>>(p);
  LATTICE_CUDA_LAUNCH_CHECK();
}

template <class T, bool Split>
void launch_typed(const ConvLaunch& p, int config) {
  switch (config) {
    case 0:
      launch_config<T, 0, Split>(p);
      break;
    case 1:
      launch_config<T, 1, Split>(p);
      break;
    case 2:
      launch_config<T, 2, Split>(p);
      break;
    case 3:
      launch_config<T, 3, Split>(p);
      break;
    case 4:
      launch_config<T, 4, Split>(p);
      break;
    default:
      launch_config<T, 5, Split>(p);
      break;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

}  // namespace

int conv_mma_configs() { return tuning::k_mma_configs; }

int conv_mma_tile_rows(int tile_config) { return tuning::k_mma_tiles[tile_config].bm; }

bool conv_mma_supported(const ConvLaunch& p) {
  const int align = p.dtype == DType::f32 ? 4 : 8;  // 16-byte rows
  return (p.dtype == DType::f16 || p.dtype == DType::bf16 || p.dtype == DType::f32) && p.cin % align == 0 &&
         p.cout % align == 0 && p.cin > 0 && p.words <= k_max_words && aligned16(p.x) && aligned16(p.w) &&
         aligned16(p.y);
}

void launch_conv_mma(const ConvLaunch& p, int tile_config, bool allow_tf32) {
  if (p.rows_cap == 0 || p.cout == 0) return;
  switch (p.dtype) {
    case DType::f16:
      launch_typed<__half, false>(p, tile_config);
      break;
    case DType::bf16:
      launch_typed<__nv_bfloat16, false>(p, tile_config);
      break;
    default:
      if (allow_tf32) {
        launch_typed<float, false>(p, tile_config);
      } else {
        launch_typed<float, true>(p, tile_config);
      }
      break;
  }
}

}  // namespace lattice::cuda
