// Tile shapes of the tensor-core implicit-GEMM kernel, kept apart from the
// kernel (STYLE: tuning lives apart from algorithms). Each configuration is one
// template instantiation; keep the set small (compile time on CI's 2 cores).
#pragma once

namespace lattice::cuda::tuning {

struct MmaTile {
  int bm, bn;         // CTA tile: output rows x output channels
  int warps_m, warps_n;  // warp grid; each warp owns (bm / warps_m) x (bn / warps_n)
};

// Index = the `tile_config` of launch_conv_mma.
inline constexpr MmaTile k_mma_tiles[] = {
    {64, 64, 2, 2},    // 0: small C_out, few rows per tile: the default for C <= 64
    {128, 64, 4, 2},   // 1: more rows per tile for long, narrow layers
    {64, 128, 2, 4},   // 2: wide C_out (>= 128)
};
inline constexpr int k_mma_bk = 32;  // C_in chunk per pipeline stage

}  // namespace lattice::cuda::tuning
