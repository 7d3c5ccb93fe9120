// MinkUNet (../shared/PERF.md; TorchSparse's SparseResUNet42, mmdetection3d's
// MinkUNet) for semantic segmentation of voxelized scans.
//
//   stem      subm k3 in->w0, BN, ReLU, subm k3 w0->w0, BN, ReLU
//   encoder   4 stages: k2 s2 conv (c->c) + BN + ReLU, then residual blocks
//   decoder   4 stages: k2 s2 transposed conv onto the matching encoder
//             level's coordinates + BN + ReLU, concat that level, residual blocks
//   head      1x1 conv -> num_classes
// Channel widths (width = 32): 32 | 32 64 128 256 | 256 128 96 96. Other
// widths scale every stage proportionally.
//
// This is the functional model used by `lattice demo` and the benchmarks; the
// nn-module version with training arrives with the gradients issue.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::models {

struct MinkUNetConfig {
  int in_channels = 4;
  int num_classes = 19;
  int width = 32;  // stem width; the others scale with it
  // Residual blocks per stage: encoder 1..4, decoder 1..4.
  std::array<int, 8> blocks{2, 2, 2, 2, 2, 2, 2, 2};
  // Batch norm with the batch's statistics (as in training mode): separate
  // batch_norm / add / relu ops. Seeded, untrained weights need it to keep
  // activations in range. Off (inference), batch norm uses the running
  // statistics, folded with the residual add and the ReLU into each
  // convolution's epilogue.
  bool batch_statistics = true;
  // float32 convolutions on CUDA may use TF32 tensor cores.
  bool allow_tf32 = false;
};

class MinkUNet {
 public:
  // Weights drawn deterministically from `seed` (He-uniform), BN at identity.
  MinkUNet(const MinkUNetConfig& config, std::uint64_t seed, DType dtype = DType::f32, Device device = Device::cpu());

  // Logits (N, num_classes) on the input's coordinates. Trace labels name each layer.
  SparseTensor forward(const SparseTensor& x) const;

  const MinkUNetConfig& config() const { return config_; }
  std::int64_t num_parameters() const;
  // Channel widths: stem, encoder 1..4, decoder 1..4.
  const std::array<int, 9>& widths() const { return widths_; }

  struct Conv {
    Array weight;  // (K, C_in, C_out)
    int kernel = 3;
    int stride = 1;
  };
  struct Norm {
    Array gamma, beta, running_mean, running_var;  // (C,) float32
    Array scale, shift;                            // the inference form (batch_norm_fold), fused into the convolution
  };
  struct Block {
    Conv conv1, conv2;
    Norm norm1, norm2;
    bool has_shortcut = false;  // 1x1 conv + BN when C_in != C_out
    Conv shortcut;
    Norm shortcut_norm;
  };
  struct Stage {
    Conv resample;  // k2 s2 conv (encoder) or transposed conv (decoder)
    Norm resample_norm;
    std::vector<Block> blocks;
  };

 private:
  MinkUNetConfig config_;
  DType dtype_;
  std::array<int, 9> widths_{};
  Conv stem1_, stem2_;
  Norm stem_norm1_, stem_norm2_;
  std::array<Stage, 4> encoder_;
  std::array<Stage, 4> decoder_;
  Conv head_;
  Array head_bias_;
};

}  // namespace lattice::models
