// Semantic-segmentation data shared by `lattice train` and `lattice demo
// --model`, so that the two cannot drift: SemanticKITTI's learning map, class
// names and colours, the per-voxel input features, voxel labels, the
// simulated-scan seeds, the safetensors metadata of a trained model, and
// per-point scoring.
//
// Features per voxel: the mean of x, y, z and remission over its points
// (remission: the "remission" field, else "intensity", else 1). Labels: the
// scan's SemanticKITTI raw ids (low 16 bits) go through the learning map to
// the 19 train ids; unlabeled / outlier / other-structure / other-object
// become k_ignore. A voxel's label is the MAJORITY train id of its labelled
// points (ties: the lower id), or k_ignore when none is labelled. Predictions
// are per point: each point takes its voxel's argmax (ties: the lower class).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/sim/lidar_scene.hpp"

namespace lattice::cli::seg {

constexpr int k_num_classes = 19;
constexpr std::int32_t k_ignore = 255;

// Simulated-scan seeds: training scans are k_train_seed + i, held-out
// evaluation scans k_eval_seed + i, the demo's default scan k_demo_seed (used
// by neither; --train-scans and --eval-scans are capped at 1000).
constexpr std::uint64_t k_train_seed = 1000;
constexpr std::uint64_t k_eval_seed = 2000;
constexpr std::uint64_t k_demo_seed = 3000;

// The feature description recorded in (and required of) a model file.
constexpr const char* k_features = "mean x, y, z, remission per voxel";
constexpr const char* k_labels = "SemanticKITTI train ids, ignore 255";

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

// SemanticKITTI train-id names (semantic-kitti.yaml, learning_map_inv order).
extern const std::array<const char*, k_num_classes> k_class_names;
// semantic-kitti.yaml's color_map (BGR there) of each train id's raw class, as RGB.
extern const std::array<Rgb, k_num_classes> k_class_colors;
// Points whose class is k_ignore (the yaml's black would vanish on a dark background).
constexpr Rgb k_ignore_color{110, 110, 110};

// SemanticKITTI's learning_map: raw semantic id (low 16 bits) -> train id,
// moving classes folded onto their static ones, k_ignore for the unscored.
std::int32_t train_id(std::uint32_t raw);
// The colour of a train id or k_ignore; ValueError for anything else.
Rgb class_color(std::int32_t id);

// (N, 4) float32 host features per point: x, y, z, remission (see above).
Array point_features(const io::PointCloud& cloud);

// One scan, voxelized for the model.
struct Sample {
  SparseTensor x;                                   // voxel features (k_features), on the device
  Array voxel_labels;                               // (capacity,) int32 on the device; undefined without labels
  std::vector<std::int32_t> point_labels;           // per point train id, host; empty without labels
  std::vector<std::int32_t> point_voxel;            // voxel row of each point, host
  std::array<bool, k_num_classes> voxel_classes{};  // train ids that label at least one voxel
  std::int64_t points = 0;
};

// Voxelizes `cloud` at `voxel_size` on `device` with a fresh coordinate
// manager; labels when the cloud has SemanticKITTI raw labels and
// `use_labels`. ValueError (naming `op`) for an empty cloud.
Sample make_sample(const io::PointCloud& cloud, double voxel_size, Device device, bool use_labels, const char* op);

// The built-in simulated scan `seed` (the other options from `base`).
io::PointCloud simulated_scan(std::uint64_t seed, const sim::LidarSceneOptions& base);

// Per point: the argmax of its voxel's logits (ties to the lower class).
// logits: (rows, k_num_classes) on any device; point_voxel from the Sample.
std::vector<std::int32_t> point_predictions(const SparseTensor& logits, const std::vector<std::int32_t>& point_voxel);

// The SemanticKITTI label file of a velodyne scan `X.bin`: `X.label` in the
// same folder, else `../labels/X.label` (the sequences/NN/velodyne layout),
// whichever exists first; nullopt when neither does.
std::optional<std::filesystem::path> find_kitti_labels(const std::filesystem::path& bin);

// The configuration a trained model file records (its "__metadata__").
struct ModelInfo {
  int variant = 18;
  int width = 16;
  int in_channels = 4;
  int num_classes = k_num_classes;
  double voxel_size = 0.2;
  // Train ids that labelled a voxel of the training scans: the classes the model knows.
  std::array<bool, k_num_classes> known_classes{};
  std::string description;  // steps / scans, for messages (may be empty)
};

io::Metadata model_metadata(const ModelInfo& info, int steps, int train_scans, int azimuth_steps, std::uint64_t seed);
// Validates a model file's metadata: ValueError naming `op`, argument `arg`
// and `path` for a missing key, a different model/features/labels or a value
// out of range.
ModelInfo parse_model_metadata(const io::Metadata& metadata, const std::string& path, const char* op, const char* arg);
// "car, road, ..." for a class mask.
std::string class_list(const std::array<bool, k_num_classes>& classes);

// Per-class scores of a (k_num_classes, k_num_classes) int64 confusion matrix
// (entry [label][prediction]) over the classes in `include` that occur in the
// labels: a table of class / points / IoU, and their mean.
struct Scores {
  std::string table;
  double miou = 0;
  int classes = 0;
};
Scores score_classes(const Array& confusion, const std::array<bool, k_num_classes>& include);
// Classes that occur in the labels of a confusion matrix.
std::array<bool, k_num_classes> labelled_classes(const Array& confusion);

}  // namespace lattice::cli::seg
