#include "lattice/models/resnet_encoder.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "lattice/core/error.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/features.hpp"
#include "models/blocks.hpp"

namespace lattice::models {

SparseResNetConfig SparseResNetConfig::variant(int depth) {
  SparseResNetConfig c;
  switch (depth) {
    case 14:
      c.blocks = {1, 1, 1, 1};
      break;
    case 18:
      c.blocks = {2, 2, 2, 2};
      break;
    case 34:
      c.blocks = {3, 4, 6, 3};
      break;
    case 50:
      c.blocks = {3, 4, 6, 3};
      c.bottleneck = true;
      break;
    case 101:
      c.blocks = {3, 4, 23, 3};
      c.bottleneck = true;
      break;
    default:
      fail("SparseResNetConfig.variant", "depth", "expected 14, 18, 34, 50 or 101, got ", depth);
  }
  return c;
}

// Stem and Stage are this model's own (MinkUNetTrainable has a different
// detail::Stem): a namespace of their own keeps the one-definition rule.
namespace resnet_detail {

using detail::BasicBlock;
using detail::Bottleneck;
using detail::LayerFactory;

class Stem : public nn::Module {
 public:
  Stem(int cin, int cout, LayerFactory& seeds) {
    conv_ = register_module("conv", std::make_shared<nn::SubmConv3d>(cin, cout, seeds.conv(3, 1)));
    norm_ = register_module("norm", seeds.norm(cout));
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    return autograd::relu(norm_->forward(conv_->forward(x)));
  }
  std::string type_name() const override { return "Stem"; }

 private:
  std::shared_ptr<nn::SubmConv3d> conv_;
  std::shared_ptr<nn::BatchNorm> norm_;
};

// [k2 s2 conv (cin -> cin) + BN + ReLU,] then the residual blocks (cin ->
// cout first, then cout -> cout).
class Stage : public nn::Module {
 public:
  Stage(int cin, int cout, int blocks, bool downsample, bool bottleneck, LayerFactory& seeds) {
    if (downsample) {
      down_ = register_module("down", std::make_shared<nn::Conv3d>(cin, cin, seeds.conv(2, 2)));
      down_norm_ = register_module("down_norm", seeds.norm(cin));
    }
    for (int b = 0; b < blocks; ++b) {
      const int in = b == 0 ? cin : cout;
      const std::string name = "block" + std::to_string(b + 1);
      if (bottleneck) {
        blocks_.push_back(register_module(name, std::make_shared<Bottleneck>(in, cout, seeds)));
      } else {
        blocks_.push_back(register_module(name, std::make_shared<BasicBlock>(in, cout, seeds)));
      }
    }
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    autograd::Variable y = down_ ? autograd::relu(down_norm_->forward(down_->forward(x))) : x;
    for (const auto& b : blocks_) y = b->forward(y);
    return y;
  }
  std::string type_name() const override { return "Stage"; }

 private:
  std::shared_ptr<nn::Conv3d> down_;
  std::shared_ptr<nn::BatchNorm> down_norm_;
  std::vector<std::shared_ptr<nn::Module>> blocks_;
};

}  // namespace resnet_detail

namespace {

// The head on the dense pooled (B, C) features. autograd::linear takes sparse
// rows only, so the B rows are wrapped as a sparse tensor of one site per
// batch item, (b, 0, 0, 0) -- row order kept, the array shared, not copied --
// and ops::linear / ops::linear_backward run on it. The result and the input
// gradient are those rows' features: dense (B, K) and (B, C).
autograd::Variable pooled_linear(const autograd::Variable& x, const autograd::Variable& weight,
                                 const autograd::Variable& bias) {
  constexpr const char* op = "SparseResNet.head";
  const Array& pooled = x.array();
  const std::int64_t b = pooled.dim(0);
  std::vector<std::int32_t> sites(static_cast<std::size_t>(b * 4), 0);
  for (std::int64_t i = 0; i < b; ++i) sites[static_cast<std::size_t>(4 * i)] = static_cast<std::int32_t>(i);
  SparseTensorOptions options;
  options.manager = CoordinateManager::create();
  options.check_unique = false;  // unique by construction
  const SparseTensor rows =
      SparseTensor::from_coords(Array::from_vector(sites, Shape{b, 4}, pooled.device()), pooled, options);
  const Array w = weight.array();
  const Array bias_value = bias.array();
  Array y = ops::linear(rows, w, bias_value).feats();
  const ops::GradRequest need{x.requires_grad(), weight.requires_grad(), bias.requires_grad()};
  return autograd::apply(op, autograd::Value{std::move(y)}, {x, weight, bias},
                         [rows, w, need](const autograd::Value& dy) -> std::vector<std::optional<autograd::Value>> {
                           ops::ConvGrads g =
                               ops::linear_backward(rows, w, rows.replace_feats(std::get<Array>(dy)), need);
                           std::vector<std::optional<autograd::Value>> out(3);
                           if (g.input) out[0] = autograd::Value{g.input->feats()};
                           if (g.weight) out[1] = autograd::Value{std::move(*g.weight)};
                           if (g.bias) out[2] = autograd::Value{std::move(*g.bias)};
                           return out;
                         });
}

}  // namespace

SparseResNet::SparseResNet(const SparseResNetConfig& config) : config_(config) {
  constexpr const char* op = "SparseResNet";
  detail::check_common_config(config, op);
  check(config.num_classes >= 0, op, "num_classes", "must be >= 0 (0: no head), got ", config.num_classes);

  const int expansion = config.bottleneck ? 4 : 1;
  for (std::size_t s = 0; s < 4; ++s) channels_[s] = config.width * (1 << s) * expansion;

  detail::LayerFactory seeds(config_);
  stem_ = register_module("stem", std::make_shared<resnet_detail::Stem>(config.in_channels, config.width, seeds));
  int cin = config.width;
  for (std::size_t s = 0; s < 4; ++s) {
    stages_[s] = register_module(
        "stage" + std::to_string(s + 1),
        std::make_shared<resnet_detail::Stage>(cin, channels_[s], config.blocks[s], s > 0, config.bottleneck, seeds));
    cin = channels_[s];
  }
  if (config.num_classes > 0) {
    head_ =
        register_module("head", std::make_shared<nn::Linear>(channels_[3], config.num_classes, true, seeds.param()));
  }
}

void SparseResNet::check_input(const autograd::Variable& x, const char* op) const {
  check<TypeError>(x.defined() && x.is_sparse(), op, "x", "must be a sparse tensor");
  const SparseTensor& in = x.sparse();
  check<TypeError>(in.dtype() == config_.dtype, op, "x", "features are ", dtype_name(in.dtype()), " but the model is ",
                   dtype_name(config_.dtype));
  check(in.channels() == config_.in_channels, op, "x", "has ", in.channels(), " channels, the model expects ",
        config_.in_channels);
  // The parameters' device, not config.device: to(Device) may have moved them.
  const Device device = parameters().front()->value.device();
  check<DeviceError>(in.device() == device, op, "x", "is on ", in.device().str(), " but the model is on ",
                     device.str());
}

std::array<autograd::Variable, 4> SparseResNet::run_stages(const autograd::Variable& x) {
  std::array<autograd::Variable, 4> out;
  autograd::Variable y = stem_->forward(x);
  for (std::size_t s = 0; s < 4; ++s) y = out[s] = stages_[s]->forward(y);
  return out;
}

autograd::Variable SparseResNet::pool(const autograd::Variable& x, std::optional<std::int64_t> batch_size,
                                      const char* op) {
  check_input(x, op);
  // Checked before any work runs (global_pool would check only after the batch
  // norms updated their statistics). The largest batch index is read on the
  // CPU only; on CUDA global_pool raises a sticky device error instead.
  if (batch_size) {
    check(*batch_size >= 1 && *batch_size <= 1023, op, "batch_size", "must be in [1, 1023], got ", *batch_size);
    const SparseTensor& in = x.sparse();
    if (in.device().is_cpu()) {
      const std::int32_t* c = in.coords().data<std::int32_t>();
      std::int32_t largest = -1;
      for (std::int64_t r = 0; r < in.rows(); ++r) largest = std::max(largest, c[4 * r]);
      check(*batch_size > largest, op, "batch_size", *batch_size, " is not larger than the largest batch index ",
            largest);
    }
  }
  return autograd::global_pool(run_stages(x)[3], ops::PoolMode::avg, batch_size);
}

std::array<autograd::Variable, 4> SparseResNet::forward_features(const autograd::Variable& x) {
  check_input(x, "SparseResNet.forward_features");
  return run_stages(x);
}

autograd::Variable SparseResNet::forward_pooled(const autograd::Variable& x, std::optional<std::int64_t> batch_size) {
  return pool(x, batch_size, "SparseResNet.forward_pooled");
}

autograd::Variable SparseResNet::forward(const autograd::Variable& x, std::optional<std::int64_t> batch_size) {
  const autograd::Variable pooled = pool(x, batch_size, "SparseResNet.forward");
  return head_ ? pooled_linear(pooled, leaf(head_->weight()), leaf(head_->bias())) : pooled;
}

std::int64_t SparseResNet::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& p : parameters()) n += p->value.numel();
  return n;
}

}  // namespace lattice::models
