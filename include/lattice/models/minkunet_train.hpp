// MinkUNetTrainable: the MinkUNet of models::MinkUNet (../shared/PERF.md) as
// an nn::Module -- parameters, batch-norm buffers, train/eval, state_dict and
// autograd -- for training semantic segmentation.
//
//   stem     subm k3 in->w0, BN, ReLU, subm k3 w0->w0, BN, ReLU
//   encoder  4 stages: k2 s2 conv (c->c) + BN + ReLU, then residual blocks
//   decoder  4 stages: k2 s2 transposed conv onto the matching encoder level's
//            coordinates (the output shares that level's key) + BN + ReLU,
//            concat that level's features, then residual blocks
//   head     Linear w8 -> num_classes (a 1x1 convolution on the active rows)
// Residual block (c_in -> c_out): relu(BN(subm k3(relu(BN(subm k3 x)))) + s),
// s = x, or BN(1x1 conv x) when c_in != c_out. Convolutions have no bias (the
// batch norm that follows supplies it); the head has one.
//
// Widths (width = 32): 32 | 32 64 128 256 | 256 128 96 96, other widths
// scale every stage proportionally (rounded, at least 1), as models::MinkUNet.
//
// Named variants, blocks per stage (encoder x4, decoder x4):
//   18  2,2,2,2, 2,2,2,2   MinkowskiEngine's MinkUNet18 (BasicBlock, LAYERS)
//   34  2,3,4,6, 2,2,2,2   MinkowskiEngine's MinkUNet34 (PERF.md's deeper one)
//   42  2,2,2,2, 2,2,2,2   TorchSparse's SparseResUNet42 / mmdet3d MinkUNet
// 18 and 42 are the same block layout under two naming conventions (ResNet-
// style depth vs every convolution counted); here both use PERF.md's two-conv
// stem (MinkowskiEngine's own MinkUNet18 has a single k5 stem convolution).
//
// Parameter names (state_dict / safetensors keys), in this order:
//   stem.conv1.weight (27, in, w0)     stem.norm1.{weight,bias,running_mean,running_var}
//   stem.conv2.weight (27, w0, w0)     stem.norm2.*
//   enc{s}.down.weight (8, c, c)       enc{s}.down_norm.*          s = 1..4
//   enc{s}.block{b}.conv1.weight, .norm1.*, .conv2.weight, .norm2.*,
//                 .shortcut.weight (1, c_in, c_out), .shortcut_norm.*  (when c_in != c_out)
//   dec{s}.up.weight (8, c_in, c_out)  dec{s}.up_norm.*            s = 1..4
//   dec{s}.block{b}.*                  (as the encoder's blocks)
//   head.weight (num_classes, w8), head.bias (num_classes,)
// Initialisation: the nn layers' PyTorch rule (uniform +-1/sqrt(fan_in)),
// each layer seeded from config.seed and its position; BN at identity.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "lattice/autograd.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/module.hpp"

namespace lattice::models {

struct MinkUNetTrainableConfig {
  int in_channels = 4;
  int num_classes = 19;
  int width = 32;  // stem width; the others scale with it
  // Residual blocks per stage: encoder 1..4, decoder 1..4.
  std::array<int, 8> blocks{2, 2, 2, 2, 2, 2, 2, 2};
  double bn_momentum = 0.1;
  std::uint64_t seed = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool allow_tf32 = false;  // float32 convolutions on CUDA may use TF32

  // 18, 34 or 42 (see above); other fields keep their defaults.
  static MinkUNetTrainableConfig variant(int depth);
};

namespace detail {
class EncoderStage;
class DecoderStage;
class Stem;
}  // namespace detail

class MinkUNetTrainable : public nn::Module {
 public:
  explicit MinkUNetTrainable(const MinkUNetTrainableConfig& config);

  // x: sparse features (N, in_channels) of the model's dtype. Returns sparse
  // logits (N, num_classes) on x's coordinates (same key).
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "MinkUNetTrainable"; }

  const MinkUNetTrainableConfig& config() const { return config_; }
  // Channel widths: stem, encoder 1..4, decoder 1..4.
  const std::array<int, 9>& widths() const { return widths_; }
  std::int64_t num_parameters() const;

 private:
  MinkUNetTrainableConfig config_;
  std::array<int, 9> widths_{};
  std::shared_ptr<detail::Stem> stem_;
  std::array<std::shared_ptr<detail::EncoderStage>, 4> encoder_;
  std::array<std::shared_ptr<detail::DecoderStage>, 4> decoder_;
  std::shared_ptr<nn::Linear> head_;
};

}  // namespace lattice::models
