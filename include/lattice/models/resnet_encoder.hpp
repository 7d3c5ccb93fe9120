// SparseResNet: a sparse ResNet encoder (issue 5's model zoo) as an
// nn::Module -- multi-scale sparse features for detectors / FPNs, and a
// global-average-pool + Linear head for point-cloud classification.
//
//   stem     subm k3 in -> w, BN, ReLU                           stride 1
//   stage 1  residual blocks (w -> c1)                           stride 1
//   stage s  k2 s2 conv (c_{s-1} -> c_{s-1}) + BN + ReLU, then   stride 2^(s-1)
//   (2..4)   residual blocks (c_{s-1} -> c_s first, then c_s -> c_s)
//   head     global average pool per batch item (B, c4) -> Linear c4 -> K
// Strides are relative to the input's: stage s output = input stride * 2^(s-1).
// BasicBlock (cin -> c), as MinkUNetTrainable's residual block:
//   relu(BN(subm k3(relu(BN(subm k3 x)))) + s)
// Bottleneck (cin -> c = 4p, torchvision's ResNet-50 block without a stride):
//   relu(BN(1x1(relu(BN(subm k3(relu(BN(1x1 x))))))) + s),  p = c / 4
// s = x, or BN(1x1 conv x) when cin != c. Convolutions have no bias (the batch
// norm that follows supplies it); the head has one.
//
// Widths: stage planes w, 2w, 4w, 8w; stage outputs c_s = planes (BasicBlock)
// or 4 * planes (Bottleneck); the stem is w wide.
//
// Choices (the reference networks differ): MinkowskiEngine's ResNet
// (examples/resnet.py) opens with a k3 s2 convolution and a max pool and
// strides inside the first block (k1 s2 shortcut); spconv/OpenPCDet's
// VoxelResBackBone8x keeps stage 1 at stride 1 and opens stages 2..4 with a
// strided sparse conv + BN + ReLU. We follow the latter so the stage-1 map is
// at the input resolution (useful to an FPN), with a k2 s2 downsampling
// convolution as MinkUNetTrainable's encoder: the output sites (the occupied
// parent cells) are the same for k2 and k3, but k2 windows do not overlap --
// every input voxel feeds exactly one output -- at 8/27 of k3's cost. The
// head pools by average (ME pools by max after an extra conv): the mean is
// defined for every non-empty item and its gradient reaches every active row.
//
// Named variants (blocks per stage; width 64 as ME's INIT_DIM / PLANES):
//   14   1,1,1,1   BasicBlock     ME's ResNet14
//   18   2,2,2,2   BasicBlock     ME's ResNet18
//   34   3,4,6,3   BasicBlock     ME's ResNet34
//   50   3,4,6,3   Bottleneck     ME's ResNet50
//   101  3,4,23,3  Bottleneck     ME's ResNet101
// Parameters at width 64, 4 input channels, no head (3-D k3 kernels make
// these larger than their 2-D namesakes): 14 15,029,504; 18 33,833,984;
// 34 64,143,616; 50 57,153,664; 101 96,199,808.
//
// Parameter names (state_dict / safetensors keys), in this order:
//   stem.conv.weight (27, in, w)       stem.norm.{weight,bias,running_mean,running_var}
//   stage{s}.down.weight (8, c, c)     stage{s}.down_norm.*    s = 2..4, c = c_{s-1}
//   stage{s}.block{b}.conv1.weight, .norm1.*, .conv2.weight, .norm2.*,
//     (Bottleneck also .conv3.weight, .norm3.*)
//     .shortcut.weight (1, cin, c), .shortcut_norm.*          (when cin != c)
//   BasicBlock  conv1 (27, cin, c), conv2 (27, c, c)
//   Bottleneck  conv1 (1, cin, p), conv2 (27, p, p), conv3 (1, p, c)
//   head.weight (K, c4), head.bias (K,)                        when K > 0
// Norm weight/bias are (C,) parameters; running_mean/var (C,) f32 buffers.
// Device: parameters are created on config.device (or moved by to(Device));
// inputs must be there. Everything runs through autograd on CPU and CUDA.
// Initialisation: the nn layers' PyTorch rule (uniform +-1/sqrt(fan_in)),
// each layer seeded from config.seed and its position; BN at identity.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "lattice/autograd.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/module.hpp"

namespace lattice::models {

struct SparseResNetConfig {
  int in_channels = 4;
  int num_classes = 0;  // 0: no head; forward returns the pooled (B, c4) features
  int width = 64;       // stem width and stage-1 planes; stages 2..4 double it
  std::array<int, 4> blocks{2, 2, 2, 2};
  bool bottleneck = false;  // Bottleneck blocks (expansion 4) instead of BasicBlocks
  double bn_momentum = 0.1;
  std::uint64_t seed = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool allow_tf32 = false;  // float32 convolutions on CUDA may use TF32

  // 14, 18, 34, 50 or 101 (see above); other fields keep their defaults.
  static SparseResNetConfig variant(int depth);
};

namespace resnet_detail {
class Stem;
class Stage;
}  // namespace resnet_detail

class SparseResNet : public nn::Module {
 public:
  explicit SparseResNet(const SparseResNetConfig& config);

  // x: sparse features (N, in_channels) of the model's dtype, on the model's
  // device. The four stage outputs: stage s has stage_channels()[s] channels
  // at x's stride * 2^s (s = 0..3); stage 0 shares x's coordinates.
  std::array<autograd::Variable, 4> forward_features(const autograd::Variable& x);
  // Global average of the last stage per batch item: dense (B, c4).
  // batch_size: B (default: one more than the largest batch index, which on
  // CUDA reads one value back from the device); items without rows give 0.
  autograd::Variable forward_pooled(const autograd::Variable& x, std::optional<std::int64_t> batch_size = std::nullopt);
  // Logits (B, num_classes) dense; with num_classes == 0, forward_pooled.
  autograd::Variable forward(const autograd::Variable& x) override { return forward(x, std::nullopt); }
  autograd::Variable forward(const autograd::Variable& x, std::optional<std::int64_t> batch_size);
  std::string type_name() const override { return "SparseResNet"; }

  const SparseResNetConfig& config() const { return config_; }
  // Output channels of stages 1..4 (c1..c4).
  const std::array<int, 4>& stage_channels() const { return channels_; }
  std::int64_t num_parameters() const;

 private:
  void check_input(const autograd::Variable& x, const char* op) const;
  std::array<autograd::Variable, 4> run_stages(const autograd::Variable& x);
  autograd::Variable pool(const autograd::Variable& x, std::optional<std::int64_t> batch_size, const char* op);

  SparseResNetConfig config_;
  std::array<int, 4> channels_{};
  std::shared_ptr<resnet_detail::Stem> stem_;
  std::array<std::shared_ptr<resnet_detail::Stage>, 4> stages_;
  std::shared_ptr<nn::Linear> head_;  // null when num_classes == 0
};

}  // namespace lattice::models
