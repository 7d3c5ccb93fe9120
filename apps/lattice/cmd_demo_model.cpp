// `lattice demo --model FILE.safetensors [SCAN]`: runs a MinkUNet trained by
// `lattice train` on one scan, prints what it predicts (and, when the scan has
// SemanticKITTI labels, how well: per-class IoU over the classes the model
// knows) and writes a bird's-eye PNG coloured by predicted class, the ground
// truth beside it when there are labels.
//
// SCAN: a .bin (KITTI/SemanticKITTI; its .label is looked up beside it or in
// ../labels), .pcd, .ply or .las file, or by default the built-in simulated
// scan with seed 3000, which training (1000..1999) and its evaluation
// (2000..2999) never use. Labels of .pcd/.ply/.las files are not SemanticKITTI
// ids and are not used.
#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "lattice/args.hpp"
#include "lattice/bird_eye.hpp"
#include "lattice/commands.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/lattice.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/png_image.hpp"
#include "lattice/segmentation_data.hpp"
#include "lattice/table.hpp"

namespace lattice::cli {

namespace {

constexpr const char* k_op = "lattice demo";

struct Scan {
  std::string description;
  std::string labels;  // where the labels came from, or why there are none
  io::PointCloud cloud;
};

std::string lower_extension(const std::filesystem::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}

Scan load_scan(const Args& args) {
  Scan scan;
  if (!args.positional().empty()) {
    check(args.positional().size() == 1, k_op, "SCAN", "expected one file, got ", args.positional().size());
    check(!args.value("scene-seed") && !args.value("azimuth-steps"), k_op, "--scene-seed",
          "--scene-seed and --azimuth-steps choose the built-in scan; not with a SCAN file");
    const std::filesystem::path path = args.positional()[0];
    io::PointCloud raw;
    if (lower_extension(path) == ".bin") {
      const auto label_path = seg::find_kitti_labels(path);
      raw = io::read_kitti_bin(path, label_path);
      scan.labels = label_path ? "SemanticKITTI labels " + label_path->string() : "no .label file beside it";
    } else {
      raw = io::read_point_cloud(path);
      raw.labels.reset();  // a PCD/PLY/LAS label field holds no SemanticKITTI ids
      scan.labels = "none used (only SemanticKITTI .label files are scored)";
    }
    scan.cloud = io::drop_non_finite(raw);
    scan.description = path.string() + " (" + grouped(scan.cloud.size()) + " points";
    if (scan.cloud.size() != raw.size())
      scan.description += ", " + grouped(raw.size() - scan.cloud.size()) + " non-finite dropped";
    scan.description += ")";
    return scan;
  }
  sim::LidarSceneOptions opts;
  const long long seed_arg = args.int_or("scene-seed", static_cast<long long>(seg::k_demo_seed));
  check(seed_arg >= 0, k_op, "--scene-seed", "must be >= 0, got ", seed_arg);
  const auto seed = static_cast<std::uint64_t>(seed_arg);
  opts.azimuth_steps = static_cast<int>(args.int_or("azimuth-steps", opts.azimuth_steps));
  scan.cloud = seg::simulated_scan(seed, opts);
  const bool held_out = seed >= seg::k_demo_seed;
  scan.description = "built-in simulated 64-beam LiDAR street scan, seed " + std::to_string(seed) +
                     (held_out ? " (held out: training uses 1000.., its evaluation 2000..)"
                               : " (a seed training or its evaluation may use)") +
                     ", " + grouped(scan.cloud.size()) + " points";
  scan.labels = "the simulation's labels";
  return scan;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Loads and checks the model file; every failure names --model and the file.
std::unique_ptr<models::MinkUNetTrainable> load_model(const std::string& path, Device device, seg::ModelInfo* info) {
  io::Metadata metadata;
  io::TensorDict state;
  try {
    state = io::load_safetensors(path, Device::cpu(), &metadata);
  } catch (const Error& e) {
    fail<IoError>(k_op, "--model", e.what());
  }
  *info = seg::parse_model_metadata(metadata, path, k_op, "--model");
  models::MinkUNetTrainableConfig config = models::MinkUNetTrainableConfig::variant(info->variant);
  config.in_channels = info->in_channels;
  config.num_classes = info->num_classes;
  config.width = info->width;
  config.device = device;
  auto model = std::make_unique<models::MinkUNetTrainable>(config);
  try {
    model->load_state_dict(state);
  } catch (const Error& e) {
    fail(k_op, "--model", path, ": the weights do not fit MinkUNet", info->variant, " width ", info->width, ": ",
         e.what());
  }
  model->eval();
  return model;
}

void print_histogram(const std::vector<std::int32_t>& pred) {
  std::array<std::int64_t, seg::k_num_classes> count{};
  for (std::int32_t c : pred) ++count[static_cast<std::size_t>(c)];
  Table table({"predicted class", "points", "%"});
  for (int c = 0; c < seg::k_num_classes; ++c) {
    const std::int64_t k = count[static_cast<std::size_t>(c)];
    if (k == 0) continue;
    table.add({seg::k_class_names[static_cast<std::size_t>(c)], grouped(k),
               fixed(100.0 * static_cast<double>(k) / static_cast<double>(pred.size()), 1)});
  }
  std::fputs(table.str(1).c_str(), stdout);
}

// Scores against the labels: IoU per class over the classes the model knows
// that occur in the labels, their mean, point accuracy, and what it cannot know.
void print_scores(const std::vector<std::int32_t>& pred, const std::vector<std::int32_t>& labels,
                  const std::array<bool, seg::k_num_classes>& known) {
  const auto n = static_cast<std::int64_t>(pred.size());
  const Array confusion =
      nn::confusion_matrix(Array::from_vector(pred, Shape{n}, Device::cpu()),
                           Array::from_vector(labels, Shape{n}, Device::cpu()), seg::k_num_classes, seg::k_ignore);
  const std::int64_t* cm = confusion.data<std::int64_t>();
  const std::array<bool, seg::k_num_classes> present = seg::labelled_classes(confusion);
  std::array<bool, seg::k_num_classes> unknown{};
  std::int64_t labelled = 0, known_points = 0, known_correct = 0, unknown_points = 0;
  for (int c = 0; c < seg::k_num_classes; ++c) {
    const auto k = static_cast<std::size_t>(c);
    std::int64_t row = 0;
    for (int p = 0; p < seg::k_num_classes; ++p) row += cm[c * seg::k_num_classes + p];
    labelled += row;
    if (known[k]) {
      known_points += row;
      known_correct += cm[c * seg::k_num_classes + c];
    } else {
      unknown_points += row;
      unknown[k] = present[k];
    }
  }
  const seg::Scores s = seg::score_classes(confusion, known);
  std::printf("\nscores against the labels (%s of %s points labelled; IoU over the classes the model knows):\n",
              grouped(labelled).c_str(), grouped(n).c_str());
  std::fputs(s.table.c_str(), stdout);
  std::printf("mIoU %.1f %% over the %d known classes present in the labels\n", 100 * s.miou, s.classes);
  std::printf("point accuracy %.1f %% of all labelled points, %.1f %% of the points of known classes\n",
              100 * nn::accuracy(confusion),
              known_points > 0 ? 100.0 * static_cast<double>(known_correct) / static_cast<double>(known_points) : 0.0);
  if (unknown_points > 0) {
    std::printf("not scored: %s labelled points of classes the training scans never had (%s)\n",
                grouped(unknown_points).c_str(), seg::class_list(unknown).c_str());
  }
}

}  // namespace

int cmd_demo_model(const std::vector<std::string>& argv) {
  const Args args(argv, {"model", "png", "device", "threads", "scene-seed", "azimuth-steps"}, {});
  if (args.value("threads")) set_cpu_threads(static_cast<int>(args.int_or("threads", 0)));
  const std::string model_path = args.string_or("model", "");
  const std::string png_path = args.string_or("png", "bev.png");
  check(!model_path.empty(), k_op, "--model", "must name a .safetensors file written by `lattice train`");
  check(!png_path.empty(), k_op, "--png", "must name a file");
  {
    // Checked before the work: libpng would only fail at the end.
    const std::filesystem::path folder = std::filesystem::path(png_path).parent_path();
    std::error_code ec;
    check<IoError>(folder.empty() || std::filesystem::is_directory(folder, ec), k_op, "--png", "folder '",
                   folder.string(), "' does not exist");
  }
  const std::string device_arg = args.string_or("device", "auto");
  const Device device =
      device_arg == "auto" ? (cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu()) : parse_device(device_arg);
  if (device.is_cuda()) {
    check<DeviceError>(device.index < cuda_device_count(), k_op, "--device", device.str(), " is not available (",
                       cuda_device_count(), " CUDA devices visible)");
  }

  seg::ModelInfo info;
  const std::unique_ptr<models::MinkUNetTrainable> model = load_model(model_path, device, &info);
  const auto t_read = std::chrono::steady_clock::now();
  const Scan scan = load_scan(args);
  const double read_ms = ms_since(t_read);
  check(scan.cloud.size() > 0, k_op, "SCAN", "the scan has no points");

  const auto t_vox = std::chrono::steady_clock::now();
  const seg::Sample sample = seg::make_sample(scan.cloud, info.voxel_size, device, true, k_op);
  synchronize(device);
  const double vox_ms = ms_since(t_vox);

  const auto t_fwd = std::chrono::steady_clock::now();
  SparseTensor logits;
  {
    autograd::NoGradGuard no_grad;
    logits = model->forward(autograd::Variable(sample.x)).sparse();
    synchronize(device);
  }
  const double fwd_ms = ms_since(t_fwd);
  const std::vector<std::int32_t> pred = seg::point_predictions(logits, sample.point_voxel);

  const BackendInfo backend = backend_info();
  std::printf("lattice %s demo --model\n", backend.version.c_str());
  std::printf("model:      %s: MinkUNet%d (trainable), width %d, %s parameters%s%s\n", model_path.c_str(), info.variant,
              info.width, grouped(model->num_parameters()).c_str(), info.description.empty() ? "" : ", ",
              info.description.c_str());
  std::printf("knows:      %s\n", seg::class_list(info.known_classes).c_str());
  std::printf("scan:       %s, read in %.1f ms\n", scan.description.c_str(), read_ms);
  std::printf("labels:     %s\n", scan.labels.c_str());
  const std::string device_text = device.is_cpu() ? "cpu, " + std::to_string(backend.cpu_threads) +
                                                        (backend.cpu_threads == 1 ? " thread" : " threads")
                                                  : device.str();
  std::printf("device:     %s\n", device_text.c_str());
  std::printf("voxelize:   %s points -> %s voxels at %.3g m (%s) in %.1f ms\n", grouped(sample.points).c_str(),
              grouped(sample.x.rows()).c_str(), info.voxel_size, seg::k_features, vox_ms);
  std::printf("forward:    %.1f ms (eval mode, no gradients; the first pass builds every relation)\n\n", fwd_ms);
  print_histogram(pred);
  if (!sample.point_labels.empty()) print_scores(pred, sample.point_labels, info.known_classes);

  const BirdEyeOptions view;
  BirdEyeStats stats;
  RgbImage image = render_bird_eye(scan.cloud.positions, pred, view, &stats);
  if (!sample.point_labels.empty()) {
    image = side_by_side(image, render_bird_eye(scan.cloud.positions, sample.point_labels, view), 8,
                         seg::Rgb{255, 255, 255});
  }
  write_png(png_path, image);
  std::printf(
      "\npng:        %s, %d x %d, bird's-eye +-%.1f m at %.2f m/pixel, %s%s points drawn (%s outside)\n",
      png_path.c_str(), image.width, image.height, view.half_extent, view.metres_per_pixel,
      sample.point_labels.empty() ? "predicted classes, " : "left predicted, right ground truth (grey: unlabelled), ",
      grouped(stats.drawn).c_str(), grouped(stats.skipped).c_str());
  return 0;
}

}  // namespace lattice::cli
