// Building blocks shared by the trainable models (minkunet_train.cpp,
// resnet_encoder.cpp): a layer factory that hands out per-layer seeds, and
// the residual blocks. Internal to src/models.
//
// Residual blocks (c_in -> c_out), the shortcut s = x, or BN(1x1 conv x) when
// c_in != c_out, registered after the main branch (names and seeds follow):
//   BasicBlock  relu(BN(subm k3(relu(BN(subm k3 x)))) + s)
//               layers conv1, norm1, conv2, norm2[, shortcut, shortcut_norm]
//   Bottleneck  relu(BN(1x1(relu(BN(subm k3(relu(BN(1x1 x))))))) + s), inner
//               width c_out / 4; layers conv1..3, norm1..3[, shortcut, shortcut_norm]
// Convolutions have no bias: the batch norm that follows supplies it.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/module.hpp"

namespace lattice::models::detail {

// The configuration checks both trainable models share (the head's class
// count is each model's own rule).
template <class Config>
void check_common_config(const Config& c, const char* op) {
  check(c.in_channels >= 1, op, "in_channels", "must be positive, got ", c.in_channels);
  check(c.width >= 1 && c.width <= 1024, op, "width", "must be in [1, 1024], got ", c.width);
  for (int b : c.blocks) check(b >= 1 && b <= 64, op, "blocks", "every entry must be in [1, 64], got ", b);
  check(std::isfinite(c.bn_momentum) && c.bn_momentum >= 0 && c.bn_momentum <= 1, op, "bn_momentum",
        "must be in [0, 1], got ", c.bn_momentum);
  check<TypeError>(is_floating(c.dtype), op, "dtype", "must be floating, got ", dtype_name(c.dtype));
}

// Hands out one initialisation seed per layer, in construction order, so
// every layer draws different weights and the whole model follows `seed`.
class LayerFactory {
 public:
  LayerFactory(DType dtype, Device device, std::uint64_t seed, bool allow_tf32, double bn_momentum)
      : dtype_(dtype), device_(device), next_(seed * 1000003ULL), allow_tf32_(allow_tf32), bn_momentum_(bn_momentum) {}
  template <class Config>
  explicit LayerFactory(const Config& c) : LayerFactory(c.dtype, c.device, c.seed, c.allow_tf32, c.bn_momentum) {}

  nn::ParamOptions param() { return {dtype_, device_, next_++}; }
  nn::ConvOptions conv(int kernel, int stride) {
    nn::ConvOptions o;
    o.kernel_size = Int3{kernel};
    o.stride = Int3{stride};
    o.bias = false;  // the following batch norm has the bias
    o.allow_tf32 = allow_tf32_;
    o.param = param();
    return o;
  }
  std::shared_ptr<nn::BatchNorm> norm(int channels) {
    // BN parameters start at 1 / 0; the seed is unused but keeps the order.
    return std::make_shared<nn::BatchNorm>(channels, 1e-5, bn_momentum_, true, param());
  }

 private:
  DType dtype_;
  Device device_;
  std::uint64_t next_;
  bool allow_tf32_;
  double bn_momentum_;
};

// The shortcut both residual blocks share.
class ResidualBase : public nn::Module {
 protected:
  void add_shortcut(int cin, int cout, LayerFactory& layers) {
    if (cin == cout) return;  // identity
    shortcut_ = register_module("shortcut", std::make_shared<nn::Conv3d>(cin, cout, layers.conv(1, 1)));
    shortcut_norm_ = register_module("shortcut_norm", layers.norm(cout));
  }
  autograd::Variable shortcut(const autograd::Variable& x) const {
    return shortcut_ ? shortcut_norm_->forward(shortcut_->forward(x)) : x;
  }

 private:
  std::shared_ptr<nn::Conv3d> shortcut_;
  std::shared_ptr<nn::BatchNorm> shortcut_norm_;
};

class BasicBlock : public ResidualBase {
 public:
  BasicBlock(int cin, int cout, LayerFactory& layers) {
    conv1_ = register_module("conv1", std::make_shared<nn::SubmConv3d>(cin, cout, layers.conv(3, 1)));
    norm1_ = register_module("norm1", layers.norm(cout));
    conv2_ = register_module("conv2", std::make_shared<nn::SubmConv3d>(cout, cout, layers.conv(3, 1)));
    norm2_ = register_module("norm2", layers.norm(cout));
    add_shortcut(cin, cout, layers);
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    const autograd::Variable s = shortcut(x);
    autograd::Variable y = autograd::relu(norm1_->forward(conv1_->forward(x)));
    y = norm2_->forward(conv2_->forward(y));
    return autograd::relu(autograd::add(y, s));
  }
  std::string type_name() const override { return "BasicBlock"; }

 private:
  std::shared_ptr<nn::SubmConv3d> conv1_, conv2_;
  std::shared_ptr<nn::BatchNorm> norm1_, norm2_;
};

// The 1x1 convolutions are stride-1 Conv3d: their output shares the input's
// key, so add() applies.
class Bottleneck : public ResidualBase {
 public:
  Bottleneck(int cin, int cout, LayerFactory& layers) {
    const int planes = cout / 4;
    conv1_ = register_module("conv1", std::make_shared<nn::Conv3d>(cin, planes, layers.conv(1, 1)));
    norm1_ = register_module("norm1", layers.norm(planes));
    conv2_ = register_module("conv2", std::make_shared<nn::SubmConv3d>(planes, planes, layers.conv(3, 1)));
    norm2_ = register_module("norm2", layers.norm(planes));
    conv3_ = register_module("conv3", std::make_shared<nn::Conv3d>(planes, cout, layers.conv(1, 1)));
    norm3_ = register_module("norm3", layers.norm(cout));
    add_shortcut(cin, cout, layers);
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    const autograd::Variable s = shortcut(x);
    autograd::Variable y = autograd::relu(norm1_->forward(conv1_->forward(x)));
    y = autograd::relu(norm2_->forward(conv2_->forward(y)));
    y = norm3_->forward(conv3_->forward(y));
    return autograd::relu(autograd::add(y, s));
  }
  std::string type_name() const override { return "Bottleneck"; }

 private:
  std::shared_ptr<nn::Conv3d> conv1_, conv3_;
  std::shared_ptr<nn::SubmConv3d> conv2_;
  std::shared_ptr<nn::BatchNorm> norm1_, norm2_, norm3_;
};

}  // namespace lattice::models::detail
