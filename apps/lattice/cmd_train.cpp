// `lattice train`: trains models::MinkUNetTrainable for semantic segmentation
// on built-in simulated LiDAR scans, evaluates point-level mIoU on held-out
// scans and saves the weights as safetensors.
//
// Data: training scans are sim::simulate_lidar_scan with seeds 1000 + i
// (i < --train-scans, cycled one scan per step), evaluation scans use seeds
// 2000 + i, so they never overlap (nor the demo's 3000). Features, labels and
// per-point predictions: segmentation_data.hpp, shared with `lattice demo
// --model`. mIoU is computed per point, as SemanticKITTI scores it, over the
// classes present in the held-out labels. The file's metadata records the
// configuration and the classes the training scans taught ("classes").
//
// Optimisation: AdamW (weight decay 1e-4), cross-entropy ignoring 255, cosine
// learning-rate decay from --lr to 0 over --steps, batch norm in training
// mode; evaluation in eval mode (running statistics).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include <unistd.h>

#include "lattice/args.hpp"
#include "lattice/commands.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/lattice.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"
#include "lattice/segmentation_data.hpp"
#include "lattice/table.hpp"

namespace lattice::cli {

namespace {

constexpr const char* k_op = "lattice train";
using seg::k_ignore;
using seg::k_num_classes;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Training progress. On a terminal: one line redrawn in place after every
// step. Into a file or pipe (logs, CI): the first step, every 5 % and the
// last, so a 150-step log stays short.
class ProgressBar {
 public:
  explicit ProgressBar(int steps) : steps_(steps), tty_(isatty(fileno(stdout)) != 0) {}

  // points_per_s: the mean since the start; elapsed_s: training time so far.
  void update(int step, double loss, double lr, double points_per_s, double elapsed_s) const {
    const bool last = step == steps_;
    if (!tty_ && step != 1 && !last && step % std::max(1, steps_ / 20) != 0) return;
    constexpr int k_width = 30;
    const int filled = static_cast<int>(static_cast<long long>(k_width) * step / steps_);
    const std::string bar = std::string(static_cast<std::size_t>(filled), '#') +
                            std::string(static_cast<std::size_t>(k_width - filled), '.');
    const int digits = static_cast<int>(std::to_string(steps_).size());
    std::printf("%sstep %*d/%d [%s] loss %.4f  lr %.2e  %s points/s  %.0f s, ~%.0f s left%s", tty_ ? "\r" : "", digits,
                step, steps_, bar.c_str(), loss, lr, grouped(static_cast<long long>(points_per_s)).c_str(), elapsed_s,
                elapsed_s / step * (steps_ - step), tty_ ? "\033[K" : "");
    if (!tty_ || last) std::printf("\n");
    std::fflush(stdout);
  }

 private:
  int steps_;
  bool tty_;
};

}  // namespace

int cmd_train(const std::vector<std::string>& argv) {
  const Args args(argv,
                  {"steps", "width", "voxel-size", "lr", "seed", "device", "out", "eval-scans", "train-scans",
                   "variant", "threads", "azimuth-steps", "dtype"},
                  {});
  check(args.positional().empty(), k_op, "arguments", "takes no positional arguments, got '", args.positional()[0],
        "'");
  if (args.value("threads")) set_cpu_threads(static_cast<int>(args.int_or("threads", 0)));
  const int steps = static_cast<int>(args.int_or("steps", 150));
  const int width = static_cast<int>(args.int_or("width", 16));
  const double voxel_size = args.double_or("voxel-size", 0.2);
  const double lr = args.double_or("lr", 4e-3);
  const auto seed = static_cast<std::uint64_t>(args.int_or("seed", 0));
  const int eval_scans = static_cast<int>(args.int_or("eval-scans", 2));
  const int train_scans = static_cast<int>(args.int_or("train-scans", 32));
  const int variant = static_cast<int>(args.int_or("variant", 18));
  const std::string out = args.string_or("out", "minkunet_train.safetensors");
  const std::string device_arg = args.string_or("device", "cpu");
  // float16 / bfloat16: mixed precision (16-bit activations and parameters,
  // float32 master weights in AdamW, float32 accumulation in every kernel).
  const std::string dtype_arg = args.string_or("dtype", "float32");
  check(dtype_arg == "float32" || dtype_arg == "float16" || dtype_arg == "bfloat16", k_op, "--dtype",
        "expected float32, float16 or bfloat16, got '", dtype_arg, "'");
  const DType dtype = dtype_arg == "float16" ? DType::f16 : (dtype_arg == "bfloat16" ? DType::bf16 : DType::f32);
  check(steps >= 1 && steps <= 1000000, k_op, "--steps", "must be in [1, 1000000], got ", steps);
  check(width >= 1 && width <= 256, k_op, "--width", "must be in [1, 256], got ", width);
  check(std::isfinite(voxel_size) && voxel_size >= 0.01 && voxel_size <= 10, k_op, "--voxel-size",
        "must be in [0.01, 10] metres, got ", voxel_size);
  check(std::isfinite(lr) && lr > 0 && lr <= 1, k_op, "--lr", "must be in (0, 1], got ", lr);
  check(eval_scans >= 0 && eval_scans <= 1000, k_op, "--eval-scans", "must be in [0, 1000], got ", eval_scans);
  check(train_scans >= 1 && train_scans <= 1000, k_op, "--train-scans", "must be in [1, 1000], got ", train_scans);
  check(!out.empty(), k_op, "--out", "must name a file");
  const Device device =
      device_arg == "auto" ? (cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu()) : parse_device(device_arg);
  if (device.is_cuda()) {
    check<DeviceError>(device.index < cuda_device_count(), k_op, "--device", device.str(), " is not available (",
                       cuda_device_count(), " CUDA devices visible)");
  }
  sim::LidarSceneOptions scene;
  scene.azimuth_steps = static_cast<int>(args.int_or("azimuth-steps", scene.azimuth_steps));

  models::MinkUNetTrainableConfig config = models::MinkUNetTrainableConfig::variant(variant);
  config.in_channels = 4;
  config.num_classes = k_num_classes;
  config.width = width;
  config.seed = seed;
  config.device = device;
  config.dtype = dtype;
  models::MinkUNetTrainable model(config);
  auto in_dtype = [dtype](seg::Sample s) {
    s.x = s.x.replace_feats(s.x.feats().astype(dtype));
    return s;
  };

  const auto t_data = std::chrono::steady_clock::now();
  std::vector<seg::Sample> train;
  // The classes the model is taught: those labelling a voxel of some training scan.
  std::array<bool, k_num_classes> known{};
  for (int i = 0; i < train_scans; ++i) {
    train.push_back(
        in_dtype(seg::make_sample(seg::simulated_scan(seg::k_train_seed + static_cast<std::uint64_t>(i), scene),
                                  voxel_size, device, true, k_op)));
    check(!train.back().point_labels.empty(), k_op, "scan", "the simulated scan ",
          seg::k_train_seed + static_cast<std::uint64_t>(i), " has no labels");
    for (int c = 0; c < k_num_classes; ++c) known[c] = known[c] || train.back().voxel_classes[c];
  }
  const double data_s = seconds_since(t_data);

  const BackendInfo info = backend_info();
  std::printf("lattice %s train\n", info.version.c_str());
  std::printf("model:   MinkUNet%d (trainable), width %d, %s parameters, %d classes (SemanticKITTI train ids)\n",
              variant, width, grouped(model.num_parameters()).c_str(), k_num_classes);
  std::printf(
      "data:    %d simulated training scans (seeds %llu..%llu, %s voxels each on average at %.3g m), made in %.1f s\n",
      train_scans, static_cast<unsigned long long>(seg::k_train_seed),
      static_cast<unsigned long long>(seg::k_train_seed) + train_scans - 1,
      grouped([&] {
        std::int64_t v = 0;
        for (const seg::Sample& s : train) v += s.x.rows();
        return v / train_scans;
      }())
          .c_str(),
      voxel_size, data_s);
  std::printf("classes: %s (the ones labelling the training voxels)\n", seg::class_list(known).c_str());
  std::printf("dtype:   %s%s\n", std::string(dtype_name(dtype)).c_str(),
              dtype == DType::f32 ? "" : " (mixed precision: float32 master weights in AdamW)");
  std::printf("optim:   AdamW lr %.3g (cosine to 0), weight decay 1e-4, %d steps, one scan per step, seed %llu\n", lr,
              steps, static_cast<unsigned long long>(seed));
  std::printf(
      "device:  %s\n\n",
      device.is_cpu()
          ? ("cpu, " + std::to_string(info.cpu_threads) + (info.cpu_threads == 1 ? " thread" : " threads")).c_str()
          : device.str().c_str());

  nn::AdamW opt(model.parameters(), {.lr = lr, .weight_decay = 1e-4, .master_weights = dtype != DType::f32});
  const nn::CrossEntropyParams ce{.ignore_index = k_ignore};
  model.train();
  const auto t_train = std::chrono::steady_clock::now();
  std::vector<double> losses;
  std::int64_t trained_points = 0;
  ProgressBar progress(steps);
  for (int step = 0; step < steps; ++step) {
    const seg::Sample& s = train[static_cast<std::size_t>(step % train_scans)];
    opt.set_lr(0.5 * lr * (1.0 + std::cos(std::numbers::pi * step / steps)));
    opt.zero_grad();
    const autograd::Variable logits = model.forward(autograd::Variable(s.x));
    const autograd::Variable loss = autograd::cross_entropy(logits, s.voxel_labels, ce);
    autograd::backward(loss);
    opt.step();
    const double value = loss.array().to(Device::cpu()).astype(DType::f64).data<double>()[0];  // waits for the step
    check(std::isfinite(value), k_op, "loss", "became ", value, " at step ", step + 1, " (try a smaller --lr)");
    losses.push_back(value);
    trained_points += s.points;
    const double elapsed = seconds_since(t_train);
    progress.update(step + 1, value, opt.lr(), static_cast<double>(trained_points) / elapsed, elapsed);
  }
  const double train_s = seconds_since(t_train);

  // Held-out evaluation in eval mode, per point.
  model.eval();
  Array confusion = Array::zeros(Shape{k_num_classes, k_num_classes}, DType::i64, Device::cpu());
  const auto t_eval = std::chrono::steady_clock::now();
  std::int64_t eval_points = 0;
  for (int i = 0; i < eval_scans; ++i) {
    const seg::Sample s = in_dtype(seg::make_sample(
        seg::simulated_scan(seg::k_eval_seed + static_cast<std::uint64_t>(i), scene), voxel_size, device, true, k_op));
    autograd::NoGradGuard no_grad;
    const SparseTensor logits = model.forward(autograd::Variable(s.x)).sparse();
    const std::vector<std::int32_t> point_pred = seg::point_predictions(logits, s.point_voxel);
    const auto n = static_cast<std::int64_t>(point_pred.size());
    const Array c =
        nn::confusion_matrix(Array::from_vector(point_pred, Shape{n}, Device::cpu()),
                             Array::from_vector(s.point_labels, Shape{n}, Device::cpu()), k_num_classes, k_ignore);
    std::int64_t* acc = confusion.data<std::int64_t>();
    const std::int64_t* add = c.data<std::int64_t>();
    for (std::int64_t k = 0; k < k_num_classes * k_num_classes; ++k) acc[k] += add[k];
    eval_points += n;
  }
  const double eval_s = seconds_since(t_eval);

  seg::ModelInfo saved{.variant = variant,
                       .width = width,
                       .in_channels = 4,
                       .num_classes = k_num_classes,
                       .voxel_size = voxel_size,
                       .known_classes = known,
                       .description = {}};
  // Saved in float32 whatever the training dtype (the master copies would
  // be more exact for 16-bit training; the rounded values are what ran).
  nn::StateDict state = model.state_dict();
  for (auto& [name, a] : state)
    if (is_floating(a.dtype()) && a.dtype() != DType::f32) a = a.astype(DType::f32);
  io::save_safetensors(out, state, seg::model_metadata(saved, steps, train_scans, scene.azimuth_steps, seed));

  double tail = 0;
  const std::size_t k = std::min<std::size_t>(10, losses.size());
  for (std::size_t i = losses.size() - k; i < losses.size(); ++i) tail += losses[i];
  tail /= static_cast<double>(k);
  std::printf("\ntrained %d steps in %.1f s (%s points/s), loss %.4f -> %.4f (mean of the last %zu: %.4f)\n", steps,
              train_s, grouped(static_cast<long long>(trained_points / train_s)).c_str(), losses.front(), losses.back(),
              k, tail);
  if (eval_scans > 0) {
    // mIoU over the classes present in the held-out labels (the simulated
    // streets have 11 of the 19): a class that is only predicted counts as a
    // false positive of the others, not as an extra zero.
    std::array<bool, k_num_classes> all{};
    all.fill(true);
    const seg::Scores scores = seg::score_classes(confusion, all);
    std::printf("evaluated %d held-out scans (seeds %llu..%llu, %s points) in %.1f s, eval mode:\n", eval_scans,
                static_cast<unsigned long long>(seg::k_eval_seed),
                static_cast<unsigned long long>(seg::k_eval_seed) + eval_scans - 1, grouped(eval_points).c_str(),
                eval_s);
    std::fputs(scores.table.c_str(), stdout);
    std::printf("point accuracy %.1f %%, mIoU %.1f %% over the %d classes present in the labels\n",
                100 * nn::accuracy(confusion), 100 * scores.miou, scores.classes);
  }
  std::printf("saved:   %s (%zu tensors)\n", out.c_str(), model.state_dict().size());
  return 0;
}

}  // namespace lattice::cli
