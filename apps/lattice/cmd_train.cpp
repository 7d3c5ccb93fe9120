// `lattice train`: trains models::MinkUNetTrainable for semantic segmentation
// on built-in simulated LiDAR scans, evaluates point-level mIoU on held-out
// scans and saves the weights as safetensors.
//
// Data: training scans are sim::simulate_lidar_scan with seeds 1000 + i
// (i < --train-scans, cycled one scan per step), evaluation scans use seeds
// 2000 + i, so they never overlap. Features per voxel: the mean of x, y, z and
// remission over its points. Labels: the scan's SemanticKITTI raw ids (low 16
// bits) go through SemanticKITTI's learning map to the 19 train ids;
// unlabeled / outlier / other-structure / other-object become the ignore id
// 255. A voxel's label is the MAJORITY train id of its labelled points (ties:
// the lower id), or 255 when none is labelled. mIoU is computed per point
// (each point takes its voxel's argmax), as SemanticKITTI scores it, over the
// classes present in the held-out labels.
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

#include "lattice/args.hpp"
#include "lattice/commands.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/lattice.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"
#include "lattice/table.hpp"

namespace lattice::cli {

namespace {

constexpr const char* k_op = "lattice train";
constexpr int k_num_classes = 19;
constexpr std::int32_t k_ignore = 255;

// SemanticKITTI train-id names (semantic-kitti.yaml, learning_map_inv order).
constexpr std::array<const char*, k_num_classes> k_class_names{
    "car",          "bicycle", "motorcycle", "truck",    "other-vehicle", "person",   "bicyclist",
    "motorcyclist", "road",    "parking",    "sidewalk", "other-ground",  "building", "fence",
    "vegetation",   "trunk",   "terrain",    "pole",     "traffic-sign"};

// SemanticKITTI's learning_map: raw semantic id -> train id (moving classes
// folded onto their static ones), k_ignore for everything not scored.
std::int32_t train_id(std::uint32_t raw) {
  switch (raw & 0xffffu) {
    case 10:
    case 252:
      return 0;  // car, moving-car
    case 11:
      return 1;  // bicycle
    case 15:
      return 2;  // motorcycle
    case 18:
    case 258:
      return 3;  // truck
    case 13:
    case 16:
    case 20:
    case 257:
    case 259:
      return 4;  // bus, on-rails, other-vehicle
    case 30:
    case 254:
      return 5;  // person
    case 31:
    case 253:
      return 6;  // bicyclist
    case 32:
    case 255:
      return 7;  // motorcyclist
    case 40:
    case 60:
      return 8;  // road, lane-marking
    case 44:
      return 9;  // parking
    case 48:
      return 10;  // sidewalk
    case 49:
      return 11;  // other-ground
    case 50:
      return 12;  // building
    case 51:
      return 13;  // fence
    case 70:
      return 14;  // vegetation
    case 71:
      return 15;  // trunk
    case 72:
      return 16;  // terrain
    case 80:
      return 17;  // pole
    case 81:
      return 18;  // traffic-sign
    default:
      return k_ignore;  // unlabeled, outlier, other-structure, other-object
  }
}

struct Sample {
  SparseTensor x;                          // voxel features (x, y, z, remission mean), on the device
  Array voxel_labels;                      // (capacity,) int32 on the device
  std::vector<std::int32_t> point_labels;  // per point, host
  std::vector<std::int32_t> point_voxel;   // voxel row of each point, host
  std::int64_t points = 0;
};

Sample make_sample(std::uint64_t seed, const sim::LidarSceneOptions& base, double voxel_size, Device device) {
  sim::LidarSceneOptions opts = base;
  opts.seed = seed;
  const io::PointCloud cloud = sim::simulate_lidar_scan(opts);
  const std::int64_t n = cloud.size();
  check(n > 0 && cloud.labels.has_value(), k_op, "scan", "the simulated scan ", seed, " has no labelled points");
  const Array* remission = cloud.field("remission");
  Array feats = Array::empty(Shape{n, 4}, DType::f32, Device::cpu());
  const float* p = cloud.positions.data<float>();
  float* f = feats.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) f[4 * i + c] = p[3 * i + c];
    f[4 * i + 3] = remission ? remission->data<float>()[i] : 1.0f;
  }
  // A manager per scan: its relations are built on the first step that uses
  // the scan and reused whenever the scan comes round again.
  ops::Voxelized vox = ops::voxelize(cloud.positions.to(device), feats.to(device),
                                     {.voxel_size = voxel_size, .manager = CoordinateManager::create()});
  Sample s;
  s.points = n;
  s.x = vox.tensor;
  const Array inverse = vox.inverse_rows.to(Device::cpu());
  const std::int32_t* inv = inverse.data<std::int32_t>();
  const std::uint32_t* raw = cloud.labels->data<std::uint32_t>();
  const std::int64_t capacity = s.x.capacity();
  s.point_labels.resize(static_cast<std::size_t>(n));
  s.point_voxel.assign(inv, inv + n);
  std::vector<std::int32_t> votes(static_cast<std::size_t>(capacity * k_num_classes), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t t = train_id(raw[i]);
    s.point_labels[static_cast<std::size_t>(i)] = t;
    if (t != k_ignore) ++votes[static_cast<std::size_t>(inv[i] * k_num_classes + t)];
  }
  std::vector<std::int32_t> voxel_labels(static_cast<std::size_t>(capacity), k_ignore);
  for (std::int64_t v = 0; v < capacity; ++v) {
    const auto* row = &votes[static_cast<std::size_t>(v * k_num_classes)];
    const auto* best = std::max_element(row, row + k_num_classes);  // first maximum: ties to the lower id
    if (*best > 0) voxel_labels[static_cast<std::size_t>(v)] = static_cast<std::int32_t>(best - row);
  }
  s.voxel_labels = Array::from_vector(voxel_labels, Shape{capacity}, device);
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int cmd_train(const std::vector<std::string>& argv) {
  const Args args(argv,
                  {"steps", "width", "voxel-size", "lr", "seed", "device", "out", "eval-scans", "train-scans",
                   "variant", "threads", "azimuth-steps"},
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
  models::MinkUNetTrainable model(config);

  const auto t_data = std::chrono::steady_clock::now();
  std::vector<Sample> train;
  for (int i = 0; i < train_scans; ++i)
    train.push_back(make_sample(1000 + static_cast<std::uint64_t>(i), scene, voxel_size, device));
  const double data_s = seconds_since(t_data);

  const BackendInfo info = backend_info();
  std::printf("lattice %s train\n", info.version.c_str());
  std::printf("model:   MinkUNet%d (trainable), width %d, %s parameters, %d classes (SemanticKITTI train ids)\n",
              variant, width, grouped(model.num_parameters()).c_str(), k_num_classes);
  std::printf(
      "data:    %d simulated training scans (seeds 1000..%d, %s voxels each on average at %.3g m), made in %.1f s\n",
      train_scans, 999 + train_scans,
      grouped([&] {
        std::int64_t v = 0;
        for (const Sample& s : train) v += s.x.rows();
        return v / train_scans;
      }())
          .c_str(),
      voxel_size, data_s);
  std::printf("optim:   AdamW lr %.3g (cosine to 0), weight decay 1e-4, %d steps, one scan per step, seed %llu\n", lr,
              steps, static_cast<unsigned long long>(seed));
  std::printf(
      "device:  %s\n\n",
      device.is_cpu()
          ? ("cpu, " + std::to_string(info.cpu_threads) + (info.cpu_threads == 1 ? " thread" : " threads")).c_str()
          : device.str().c_str());

  nn::AdamW opt(model.parameters(), {.lr = lr, .weight_decay = 1e-4});
  const nn::CrossEntropyParams ce{.ignore_index = k_ignore};
  model.train();
  const auto t_train = std::chrono::steady_clock::now();
  std::vector<double> losses;
  std::int64_t trained_points = 0;
  for (int step = 0; step < steps; ++step) {
    const Sample& s = train[static_cast<std::size_t>(step % train_scans)];
    opt.set_lr(0.5 * lr * (1.0 + std::cos(std::numbers::pi * step / steps)));
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    const autograd::Variable logits = model.forward(autograd::Variable(s.x));
    const autograd::Variable loss = autograd::cross_entropy(logits, s.voxel_labels, ce);
    autograd::backward(loss);
    opt.step();
    const double value = loss.array().to(Device::cpu()).astype(DType::f64).data<double>()[0];  // waits for the step
    const double dt = seconds_since(t0);
    check(std::isfinite(value), k_op, "loss", "became ", value, " at step ", step + 1, " (try a smaller --lr)");
    losses.push_back(value);
    trained_points += s.points;
    std::printf("step %4d/%d  loss %.4f  lr %.2e  voxels %s  %.2f s  %s points/s\n", step + 1, steps, value, opt.lr(),
                grouped(s.x.rows()).c_str(), dt, grouped(static_cast<long long>(s.points / dt)).c_str());
    std::fflush(stdout);
  }
  const double train_s = seconds_since(t_train);

  // Held-out evaluation in eval mode, per point.
  model.eval();
  Array confusion = Array::zeros(Shape{k_num_classes, k_num_classes}, DType::i64, Device::cpu());
  const auto t_eval = std::chrono::steady_clock::now();
  std::int64_t eval_points = 0;
  for (int i = 0; i < eval_scans; ++i) {
    const Sample s = make_sample(2000 + static_cast<std::uint64_t>(i), scene, voxel_size, device);
    autograd::NoGradGuard no_grad;
    const SparseTensor logits = model.forward(autograd::Variable(s.x)).sparse();
    // Voxel argmax (ties to the lower class), then each point takes its voxel's.
    const Array f = logits.feats().to(Device::cpu()).astype(DType::f32);
    const float* l = f.data<float>();
    std::vector<std::int32_t> point_pred(s.point_voxel.size());
    for (std::size_t j = 0; j < point_pred.size(); ++j) {
      const float* row = l + static_cast<std::ptrdiff_t>(s.point_voxel[j]) * k_num_classes;
      point_pred[j] = static_cast<std::int32_t>(std::max_element(row, row + k_num_classes) - row);
    }
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

  io::save_safetensors(out, model.state_dict(),
                       {{"model", "MinkUNetTrainable"},
                        {"variant", std::to_string(variant)},
                        {"width", std::to_string(width)},
                        {"in_channels", "4"},
                        {"num_classes", std::to_string(k_num_classes)},
                        {"features", "mean x, y, z, remission per voxel"},
                        {"voxel_size", std::to_string(voxel_size)},
                        {"steps", std::to_string(steps)},
                        {"labels", "SemanticKITTI train ids, ignore 255"}});

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
    const std::vector<double> iou = nn::iou_per_class(confusion);
    const std::int64_t* cm = confusion.data<std::int64_t>();
    Table table({"class", "points", "IoU %"});
    double sum = 0;
    int present = 0;
    for (int c = 0; c < k_num_classes; ++c) {
      std::int64_t count = 0;
      for (int p = 0; p < k_num_classes; ++p) count += cm[c * k_num_classes + p];
      if (count == 0) continue;
      sum += iou[static_cast<std::size_t>(c)];
      ++present;
      table.add({k_class_names[static_cast<std::size_t>(c)], grouped(count),
                 fixed(100 * iou[static_cast<std::size_t>(c)], 1)});
    }
    std::printf("evaluated %d held-out scans (seeds 2000..%d, %s points) in %.1f s, eval mode:\n", eval_scans,
                1999 + eval_scans, grouped(eval_points).c_str(), eval_s);
    std::fputs(table.str().c_str(), stdout);
    std::printf("point accuracy %.1f %%, mIoU %.1f %% over the %d classes present in the labels\n",
                100 * nn::accuracy(confusion), present > 0 ? 100 * sum / present : 0.0, present);
  }
  std::printf("saved:   %s (%zu tensors)\n", out.c_str(), model.state_dict().size());
  return 0;
}

}  // namespace lattice::cli
