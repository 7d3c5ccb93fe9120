#include "lattice/models/minkunet_train.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "lattice/core/error.hpp"
#include "models/blocks.hpp"

namespace lattice::models {

MinkUNetTrainableConfig MinkUNetTrainableConfig::variant(int depth) {
  MinkUNetTrainableConfig c;
  switch (depth) {
    case 18:
    case 42:
      c.blocks = {2, 2, 2, 2, 2, 2, 2, 2};
      break;
    case 34:
      c.blocks = {2, 3, 4, 6, 2, 2, 2, 2};
      break;
    default:
      fail("MinkUNetTrainableConfig.variant", "depth", "expected 18, 34 or 42, got ", depth);
  }
  return c;
}

namespace detail {

class Stem : public nn::Module {
 public:
  Stem(int cin, int cout, LayerFactory& seeds) {
    conv1_ = register_module("conv1", std::make_shared<nn::SubmConv3d>(cin, cout, seeds.conv(3, 1)));
    norm1_ = register_module("norm1", seeds.norm(cout));
    conv2_ = register_module("conv2", std::make_shared<nn::SubmConv3d>(cout, cout, seeds.conv(3, 1)));
    norm2_ = register_module("norm2", seeds.norm(cout));
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    const autograd::Variable y = autograd::relu(norm1_->forward(conv1_->forward(x)));
    return autograd::relu(norm2_->forward(conv2_->forward(y)));
  }
  std::string type_name() const override { return "Stem"; }

 private:
  std::shared_ptr<nn::SubmConv3d> conv1_, conv2_;
  std::shared_ptr<nn::BatchNorm> norm1_, norm2_;
};

// k2 s2 conv (c -> c) + BN + ReLU, then the residual blocks (c -> cout first).
class EncoderStage : public nn::Module {
 public:
  EncoderStage(int cin, int cout, int blocks, LayerFactory& seeds) {
    down_ = register_module("down", std::make_shared<nn::Conv3d>(cin, cin, seeds.conv(2, 2)));
    down_norm_ = register_module("down_norm", seeds.norm(cin));
    for (int b = 0; b < blocks; ++b) {
      blocks_.push_back(register_module("block" + std::to_string(b + 1),
                                        std::make_shared<BasicBlock>(b == 0 ? cin : cout, cout, seeds)));
    }
  }
  autograd::Variable forward(const autograd::Variable& x) override {
    autograd::Variable y = autograd::relu(down_norm_->forward(down_->forward(x)));
    for (const auto& b : blocks_) y = b->forward(y);
    return y;
  }
  std::string type_name() const override { return "EncoderStage"; }

 private:
  std::shared_ptr<nn::Conv3d> down_;
  std::shared_ptr<nn::BatchNorm> down_norm_;
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

// k2 s2 transposed conv onto the skip level's coordinates + BN + ReLU, cat
// the skip features, then the residual blocks (cout + skip -> cout first).
class DecoderStage : public nn::Module {
 public:
  DecoderStage(int cin, int cout, int skip, int blocks, LayerFactory& seeds) {
    up_ = register_module("up", std::make_shared<nn::ConvTranspose3d>(cin, cout, seeds.conv(2, 2)));
    up_norm_ = register_module("up_norm", seeds.norm(cout));
    for (int b = 0; b < blocks; ++b) {
      blocks_.push_back(register_module("block" + std::to_string(b + 1),
                                        std::make_shared<BasicBlock>(b == 0 ? cout + skip : cout, cout, seeds)));
    }
  }
  autograd::Variable forward(const autograd::Variable&) override {
    fail("MinkUNetTrainable.DecoderStage.forward", "skip",
         "a decoder stage needs the skip level: call forward(x, skip)");
  }
  autograd::Variable forward(const autograd::Variable& x, const autograd::Variable& skip) {
    // The transposed conv's output shares the skip level's key: cat needs that.
    autograd::Variable y = autograd::relu(up_norm_->forward(up_->forward(x, ops::TargetCoords(skip.sparse()))));
    y = autograd::cat(y, skip);
    for (const auto& b : blocks_) y = b->forward(y);
    return y;
  }
  std::string type_name() const override { return "DecoderStage"; }

 private:
  std::shared_ptr<nn::ConvTranspose3d> up_;
  std::shared_ptr<nn::BatchNorm> up_norm_;
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

}  // namespace detail

namespace {
int scaled(int base, int width) { return std::max(1, static_cast<int>(std::lround(base * width / 32.0))); }
}  // namespace

MinkUNetTrainable::MinkUNetTrainable(const MinkUNetTrainableConfig& config) : config_(config) {
  constexpr const char* op = "MinkUNetTrainable";
  detail::check_common_config(config, op);
  check(config.num_classes >= 1, op, "num_classes", "must be positive, got ", config.num_classes);

  constexpr std::array<int, 9> k_base{32, 32, 64, 128, 256, 256, 128, 96, 96};
  for (std::size_t i = 0; i < k_base.size(); ++i) widths_[i] = scaled(k_base[i], config.width);
  const auto& w = widths_;

  detail::LayerFactory seeds(config_);
  stem_ = register_module("stem", std::make_shared<detail::Stem>(config.in_channels, w[0], seeds));
  for (std::size_t s = 0; s < 4; ++s) {
    encoder_[s] = register_module("enc" + std::to_string(s + 1),
                                  std::make_shared<detail::EncoderStage>(w[s], w[s + 1], config.blocks[s], seeds));
  }
  for (std::size_t s = 0; s < 4; ++s) {
    const int skip = w[3 - s];  // encoder level 3, 2, 1, stem
    decoder_[s] =
        register_module("dec" + std::to_string(s + 1),
                        std::make_shared<detail::DecoderStage>(w[4 + s], w[5 + s], skip, config.blocks[4 + s], seeds));
  }
  head_ = register_module("head", std::make_shared<nn::Linear>(w[8], config.num_classes, true, seeds.param()));
}

autograd::Variable MinkUNetTrainable::forward(const autograd::Variable& x) {
  constexpr const char* op = "MinkUNetTrainable.forward";
  check<TypeError>(x.defined() && x.is_sparse(), op, "x", "must be a sparse tensor");
  const SparseTensor& in = x.sparse();
  check<TypeError>(in.dtype() == config_.dtype, op, "x", "features are ", dtype_name(in.dtype()), " but the model is ",
                   dtype_name(config_.dtype));
  check(in.channels() == config_.in_channels, op, "x", "has ", in.channels(), " channels, the model expects ",
        config_.in_channels);
  std::array<autograd::Variable, 5> levels;  // stem output, then encoder stages 1..4
  levels[0] = stem_->forward(x);
  for (std::size_t s = 0; s < 4; ++s) levels[s + 1] = encoder_[s]->forward(levels[s]);
  autograd::Variable y = levels[4];
  for (std::size_t s = 0; s < 4; ++s) y = decoder_[s]->forward(y, levels[3 - s]);
  return head_->forward(y);
}

std::int64_t MinkUNetTrainable::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& p : parameters()) n += p->value.numel();
  return n;
}

}  // namespace lattice::models
