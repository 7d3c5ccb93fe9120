// Tile shapes of the tensor-core implicit-GEMM kernel, kept apart from the
// kernel (STYLE: tuning lives apart from algorithms). Each configuration is one
// template instantiation per element type; keep the set small (compile time on
// CI's 2 cores).
#pragma once

namespace lattice::cuda::tuning {

struct MmaTile {
  int bm, bn;            // CTA tile: output rows x output channels
  int warps_m, warps_n;  // warp grid; each warp owns (bm / warps_m) x (bn / warps_n)
  int bk;                // C_in chunk per pipeline stage
  int stages;            // cp.async pipeline depth
};

// Index = the `tile_config` of launch_conv_mma.
inline constexpr MmaTile k_mma_tiles[] = {
    {64, 64, 2, 2, 32, 3},    // 0: narrow layers (C_out <= 64)
    {128, 64, 4, 2, 32, 3},   // 1: more rows per CTA for long, narrow layers
    {64, 128, 2, 4, 32, 3},   // 2: wide C_out
    {128, 128, 4, 2, 32, 3},  // 3: wide C_out, many rows
    {64, 64, 2, 2, 64, 3},    // 4: narrow C_out, wide C_in (fewer pipeline steps)
    {128, 96, 4, 2, 32, 3},   // 5: C_out = 96 (MinkUNet's decoder) without a half-empty second column tile
};
inline constexpr int k_mma_configs = sizeof(k_mma_tiles) / sizeof(k_mma_tiles[0]);

}  // namespace lattice::cuda::tuning
