#include "lattice/models/minkunet.hpp"

#include <cmath>
#include <string>
#include <tuple>

#include "lattice/core/trace.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"

namespace lattice::models {

namespace {

// splitmix64: a portable generator, so seeded weights are the same everywhere.
class SplitMix {
 public:
  explicit SplitMix(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  std::uint64_t state_;
};

MinkUNet::Conv make_conv(SplitMix& rng, int kernel, int stride, int cin, int cout, DType dtype, Device device) {
  const std::int64_t volume = std::int64_t{kernel} * kernel * kernel;
  // He-uniform for ReLU networks: bound sqrt(6 / fan_in).
  const double bound = std::sqrt(6.0 / static_cast<double>(volume * cin));
  std::vector<float> w(static_cast<std::size_t>(volume * cin * cout));
  for (float& v : w) v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  Array weight = Array::from_vector(w, Shape{volume, cin, cout}, Device::cpu()).astype(dtype).to(device);
  return {std::move(weight), kernel, stride};
}

MinkUNet::Norm make_norm(int c, Device device) {
  MinkUNet::Norm n{Array::full(Shape{c}, DType::f32, 1.0, device),
                   Array::zeros(Shape{c}, DType::f32, device),
                   Array::zeros(Shape{c}, DType::f32, device),
                   Array::full(Shape{c}, DType::f32, 1.0, device),
                   {},
                   {}};
  std::tie(n.scale, n.shift) = ops::batch_norm_fold(
      {.weight = n.gamma, .bias = n.beta, .running_mean = n.running_mean, .running_var = n.running_var});
  return n;
}

MinkUNet::Block make_block(SplitMix& rng, int cin, int cout, DType dtype, Device device) {
  MinkUNet::Block b;
  b.conv1 = make_conv(rng, 3, 1, cin, cout, dtype, device);
  b.norm1 = make_norm(cout, device);
  b.conv2 = make_conv(rng, 3, 1, cout, cout, dtype, device);
  b.norm2 = make_norm(cout, device);
  b.has_shortcut = cin != cout;
  if (b.has_shortcut) {
    b.shortcut = make_conv(rng, 1, 1, cin, cout, dtype, device);
    b.shortcut_norm = make_norm(cout, device);
  }
  return b;
}

// Runs the layers. With batch statistics, each convolution is followed by
// batch_norm, ReLU and the residual add as separate ops; in inference mode
// (running statistics) the folded batch norm, the residual and the ReLU are
// fused into the convolution's epilogue: one pass over each output.
class Runner {
 public:
  Runner(bool batch_statistics, bool allow_tf32) : batch_statistics_(batch_statistics), tf32_(allow_tf32) {}
  bool tf32() const { return tf32_; }

  // conv(epilogue) followed by norm, optional residual and optional ReLU.
  template <class ConvFn>
  SparseTensor conv_norm(const ConvFn& conv, const MinkUNet::Norm& n, bool relu,
                         const SparseTensor* residual = nullptr) const {
    if (!batch_statistics_) {
      ops::ConvEpilogue e;
      e.scale = n.scale;
      e.shift = n.shift;
      if (residual) e.residual = *residual;
      e.relu = relu;
      return conv(e);
    }
    SparseTensor y = ops::batch_norm(conv(ops::ConvEpilogue{}), {.weight = n.gamma,
                                                                 .bias = n.beta,
                                                                 .running_mean = n.running_mean,
                                                                 .running_var = n.running_var,
                                                                 .training = true})
                         .output;
    if (residual) y = ops::add(y, *residual);
    return relu ? ops::relu(y) : y;
  }

  SparseTensor subm_norm(const SparseTensor& x, const MinkUNet::Conv& c, const MinkUNet::Norm& n, bool relu,
                         const SparseTensor* residual = nullptr) const {
    return conv_norm(
        [&](const ops::ConvEpilogue& e) {
          return ops::subm_conv3d(x, c.weight, std::nullopt,
                                  {.kernel_size = c.kernel, .allow_tf32 = tf32_, .epilogue = e});
        },
        n, relu, residual);
  }

  SparseTensor block(const SparseTensor& x, const MinkUNet::Block& b, const std::string& name) const {
    SparseTensor y, shortcut = x;
    if (b.has_shortcut) {
      TraceLabel label(name + ".shortcut");
      shortcut = conv_norm(
          [&](const ops::ConvEpilogue& e) {
            return ops::conv3d(x, b.shortcut.weight, std::nullopt,
                               {.kernel_size = 1, .allow_tf32 = tf32_, .epilogue = e});
          },
          b.shortcut_norm, false);
    }
    {
      TraceLabel label(name + ".conv1");
      y = subm_norm(x, b.conv1, b.norm1, true);
    }
    TraceLabel label(name + ".conv2");
    return subm_norm(y, b.conv2, b.norm2, true, &shortcut);  // relu(norm(conv2(y)) + shortcut)
  }

 private:
  bool batch_statistics_;
  bool tf32_;
};

int scaled(int base, int width) { return std::max(1, static_cast<int>(std::lround(base * width / 32.0))); }

}  // namespace

MinkUNet::MinkUNet(const MinkUNetConfig& config, std::uint64_t seed, DType dtype, Device device)
    : config_(config), dtype_(dtype) {
  check(config.in_channels >= 1, "MinkUNet", "in_channels", "must be positive, got ", config.in_channels);
  check(config.num_classes >= 1, "MinkUNet", "num_classes", "must be positive, got ", config.num_classes);
  check(config.width >= 1 && config.width <= 1024, "MinkUNet", "width", "must be in [1, 1024], got ", config.width);
  for (int b : config.blocks) check(b >= 1 && b <= 64, "MinkUNet", "blocks", "every entry must be in [1, 64], got ", b);
  check<TypeError>(is_floating(dtype), "MinkUNet", "dtype", "must be floating, got ", dtype_name(dtype));

  constexpr std::array<int, 9> k_base{32, 32, 64, 128, 256, 256, 128, 96, 96};
  for (std::size_t i = 0; i < k_base.size(); ++i) widths_[i] = scaled(k_base[i], config.width);
  const auto& w = widths_;

  SplitMix rng(seed);
  stem1_ = make_conv(rng, 3, 1, config.in_channels, w[0], dtype, device);
  stem_norm1_ = make_norm(w[0], device);
  stem2_ = make_conv(rng, 3, 1, w[0], w[0], dtype, device);
  stem_norm2_ = make_norm(w[0], device);
  for (int s = 0; s < 4; ++s) {
    Stage& st = encoder_[static_cast<std::size_t>(s)];
    const int cin = w[static_cast<std::size_t>(s)], cout = w[static_cast<std::size_t>(s) + 1];
    st.resample = make_conv(rng, 2, 2, cin, cin, dtype, device);
    st.resample_norm = make_norm(cin, device);
    for (int b = 0; b < config.blocks[static_cast<std::size_t>(s)]; ++b) {
      st.blocks.push_back(make_block(rng, b == 0 ? cin : cout, cout, dtype, device));
    }
  }
  for (int s = 0; s < 4; ++s) {
    Stage& st = decoder_[static_cast<std::size_t>(s)];
    const int cin = w[static_cast<std::size_t>(4 + s)], cout = w[static_cast<std::size_t>(5 + s)];
    const int skip = w[static_cast<std::size_t>(3 - s)];  // encoder level 3, 2, 1, stem
    st.resample = make_conv(rng, 2, 2, cin, cout, dtype, device);
    st.resample_norm = make_norm(cout, device);
    for (int b = 0; b < config.blocks[static_cast<std::size_t>(4 + s)]; ++b) {
      st.blocks.push_back(make_block(rng, b == 0 ? cout + skip : cout, cout, dtype, device));
    }
  }
  head_ = make_conv(rng, 1, 1, w[8], config.num_classes, dtype, device);
  head_bias_ = Array::zeros(Shape{config.num_classes}, dtype, device);
}

SparseTensor MinkUNet::forward(const SparseTensor& input) const {
  check<TypeError>(input.dtype() == dtype_, "MinkUNet.forward", "x", "features are ", dtype_name(input.dtype()),
                   " but the model is ", dtype_name(dtype_));
  check(input.channels() == config_.in_channels, "MinkUNet.forward", "x", "has ", input.channels(),
        " channels, the model expects ", config_.in_channels);
  const Runner run(config_.batch_statistics, config_.allow_tf32);
  std::array<SparseTensor, 5> levels;  // stem output, then encoder stages 1..4
  {
    TraceLabel label("stem.conv1");
    levels[0] = run.subm_norm(input, stem1_, stem_norm1_, true);
  }
  {
    TraceLabel label("stem.conv2");
    levels[0] = run.subm_norm(levels[0], stem2_, stem_norm2_, true);
  }
  for (std::size_t s = 0; s < 4; ++s) {
    const std::string name = "enc" + std::to_string(s + 1);
    const Stage& st = encoder_[s];
    SparseTensor x;
    {
      TraceLabel label(name + ".down");
      x = run.conv_norm(
          [&](const ops::ConvEpilogue& e) {
            return ops::conv3d(levels[s], st.resample.weight, std::nullopt,
                               {.kernel_size = 2, .stride = 2, .allow_tf32 = run.tf32(), .epilogue = e});
          },
          st.resample_norm, true);
    }
    for (std::size_t b = 0; b < st.blocks.size(); ++b)
      x = run.block(x, st.blocks[b], name + ".block" + std::to_string(b + 1));
    levels[s + 1] = x;
  }
  SparseTensor x = levels[4];
  for (std::size_t s = 0; s < 4; ++s) {
    const std::string name = "dec" + std::to_string(s + 1);
    const Stage& st = decoder_[s];
    const SparseTensor& skip = levels[3 - s];
    {
      TraceLabel label(name + ".up");
      // Onto the matching encoder level's coordinates: the output shares its key.
      x = run.conv_norm(
          [&](const ops::ConvEpilogue& e) {
            return ops::conv_transpose3d(
                x, st.resample.weight, std::nullopt,
                {.kernel_size = 2, .stride = 2, .coordinates = skip, .allow_tf32 = run.tf32(), .epilogue = e});
          },
          st.resample_norm, true);
    }
    {
      TraceLabel label(name + ".cat");
      x = ops::cat(x, skip);
    }
    for (std::size_t b = 0; b < st.blocks.size(); ++b)
      x = run.block(x, st.blocks[b], name + ".block" + std::to_string(b + 1));
  }
  TraceLabel label("head");
  return ops::conv3d(x, head_.weight, head_bias_, {.kernel_size = 1, .allow_tf32 = run.tf32()});
}

std::int64_t MinkUNet::num_parameters() const {
  std::int64_t n =
      stem1_.weight.numel() + stem2_.weight.numel() + 4 * widths_[0] + head_.weight.numel() + head_bias_.numel();
  auto add_block = [&](const Block& b) {
    n += b.conv1.weight.numel() + b.conv2.weight.numel() + 2 * b.norm1.gamma.numel() + 2 * b.norm2.gamma.numel();
    if (b.has_shortcut) n += b.shortcut.weight.numel() + 2 * b.shortcut_norm.gamma.numel();
  };
  for (const auto* stages : {&encoder_, &decoder_}) {
    for (const Stage& st : *stages) {
      n += st.resample.weight.numel() + 2 * st.resample_norm.gamma.numel();
      for (const Block& b : st.blocks) add_block(b);
    }
  }
  return n;
}

}  // namespace lattice::models
