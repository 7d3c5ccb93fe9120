#include "lattice/segmentation_data.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "lattice/core/error.hpp"
#include "lattice/lattice.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/table.hpp"

namespace lattice::cli::seg {

const std::array<const char*, k_num_classes> k_class_names{
    "car",          "bicycle", "motorcycle", "truck",    "other-vehicle", "person",   "bicyclist",
    "motorcyclist", "road",    "parking",    "sidewalk", "other-ground",  "building", "fence",
    "vegetation",   "trunk",   "terrain",    "pole",     "traffic-sign"};

// learning_map_inv: train id -> raw id 10 11 15 18 20 30 31 32 40 44 48 49 50
// 51 70 71 72 80 81, whose BGR colours are reversed here.
const std::array<Rgb, k_num_classes> k_class_colors{{
    {100, 150, 245},  // car
    {100, 230, 245},  // bicycle
    {30, 60, 150},    // motorcycle
    {80, 30, 180},    // truck
    {0, 0, 255},      // other-vehicle
    {255, 30, 30},    // person
    {255, 40, 200},   // bicyclist
    {150, 30, 90},    // motorcyclist
    {255, 0, 255},    // road
    {255, 150, 255},  // parking
    {75, 0, 75},      // sidewalk
    {175, 0, 75},     // other-ground
    {255, 200, 0},    // building
    {255, 120, 50},   // fence
    {0, 175, 0},      // vegetation
    {135, 60, 0},     // trunk
    {150, 240, 80},   // terrain
    {255, 240, 150},  // pole
    {255, 0, 0},      // traffic-sign
}};

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
    case 256:
    case 257:
    case 259:
      return 4;  // bus, on-rails, other-vehicle (and moving ones)
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

Rgb class_color(std::int32_t id) {
  if (id == k_ignore) return k_ignore_color;
  check(id >= 0 && id < k_num_classes, "class_color", "id", "expected a train id in [0, ", k_num_classes, ") or ",
        k_ignore, ", got ", id);
  return k_class_colors[static_cast<std::size_t>(id)];
}

Array point_features(const io::PointCloud& cloud) {
  const std::int64_t n = cloud.size();
  const Array* remission = cloud.field("remission");
  if (remission == nullptr) remission = cloud.field("intensity");
  Array feats = Array::empty(Shape{n, 4}, DType::f32, Device::cpu());
  const float* p = cloud.positions.data<float>();
  const float* r = remission ? remission->data<float>() : nullptr;
  float* f = feats.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) f[4 * i + c] = p[3 * i + c];
    f[4 * i + 3] = r ? r[i] : 1.0f;
  }
  return feats;
}

Sample make_sample(const io::PointCloud& cloud, double voxel_size, Device device, bool use_labels, const char* op) {
  const std::int64_t n = cloud.size();
  check(n > 0, op, "scan", "has no points");
  const bool labelled = use_labels && cloud.labels.has_value();
  // A manager per scan: its relations are built on the first pass over the
  // scan and reused whenever the scan comes round again.
  ops::Voxelized vox = ops::voxelize(cloud.positions.to(device), point_features(cloud).to(device),
                                     {.voxel_size = voxel_size, .manager = CoordinateManager::create()});
  Sample s;
  s.points = n;
  s.x = vox.tensor;
  const Array inverse = vox.inverse_rows.to(Device::cpu());
  const std::int32_t* inv = inverse.data<std::int32_t>();
  s.point_voxel.assign(inv, inv + n);
  if (!labelled) return s;

  const std::uint32_t* raw = cloud.labels->data<std::uint32_t>();
  const std::int64_t capacity = s.x.capacity();
  s.point_labels.resize(static_cast<std::size_t>(n));
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
    if (*best == 0) continue;
    const auto t = static_cast<std::int32_t>(best - row);
    voxel_labels[static_cast<std::size_t>(v)] = t;
    s.voxel_classes[static_cast<std::size_t>(t)] = true;
  }
  s.voxel_labels = Array::from_vector(voxel_labels, Shape{capacity}, device);
  return s;
}

io::PointCloud simulated_scan(std::uint64_t seed, const sim::LidarSceneOptions& base) {
  sim::LidarSceneOptions opts = base;
  opts.seed = seed;
  return sim::simulate_lidar_scan(opts);
}

std::vector<std::int32_t> point_predictions(const SparseTensor& logits, const std::vector<std::int32_t>& point_voxel) {
  const std::int64_t c = logits.channels();
  check(c == k_num_classes, "point_predictions", "logits", "expected ", k_num_classes, " channels, got ", c);
  const Array f = logits.feats().to(Device::cpu()).astype(DType::f32);
  const float* l = f.data<float>();
  const std::int64_t rows = logits.rows();
  std::vector<std::int32_t> pred(point_voxel.size());
  for (std::size_t j = 0; j < pred.size(); ++j) {
    const std::int32_t v = point_voxel[j];
    check(v >= 0 && v < rows, "point_predictions", "point_voxel", "row ", v, " of point ", j, " is outside the ", rows,
          " voxels");
    const float* row = l + static_cast<std::ptrdiff_t>(v) * c;
    pred[j] = static_cast<std::int32_t>(std::max_element(row, row + c) - row);  // first maximum
  }
  return pred;
}

std::optional<std::filesystem::path> find_kitti_labels(const std::filesystem::path& bin) {
  const std::filesystem::path name = bin.filename().replace_extension(".label");
  const std::filesystem::path dir = bin.parent_path();
  for (const std::filesystem::path& candidate : {dir / name, dir.parent_path() / "labels" / name}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  return std::nullopt;
}

io::Metadata model_metadata(const ModelInfo& info, int steps, int train_scans, int azimuth_steps, std::uint64_t seed) {
  std::string classes;
  for (int c = 0; c < k_num_classes; ++c) {
    if (!info.known_classes[static_cast<std::size_t>(c)]) continue;
    if (!classes.empty()) classes += ",";
    classes += std::to_string(c);
  }
  return {{"model", "MinkUNetTrainable"},
          {"variant", std::to_string(info.variant)},
          {"width", std::to_string(info.width)},
          {"in_channels", std::to_string(info.in_channels)},
          {"num_classes", std::to_string(info.num_classes)},
          {"features", k_features},
          {"voxel_size", std::to_string(info.voxel_size)},
          {"steps", std::to_string(steps)},
          {"labels", k_labels},
          {"classes", classes},
          {"train_scans", std::to_string(train_scans)},
          {"azimuth_steps", std::to_string(azimuth_steps)},
          {"seed", std::to_string(seed)}};
}

namespace {

const std::string& required(const io::Metadata& m, const std::string& key, const std::string& path, const char* op,
                            const char* arg) {
  auto it = m.find(key);
  check(it != m.end(), op, arg, path, ": metadata key '", key,
        "' is missing (not a model written by `lattice train`; retrain it)");
  return it->second;
}

int parse_int(const std::string& text, const std::string& key, const std::string& path, const char* op,
              const char* arg) {
  int out = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  check(ec == std::errc() && ptr == text.data() + text.size(), op, arg, path, ": metadata '", key,
        "' is not an integer: '", text, "'");
  return out;
}

}  // namespace

ModelInfo parse_model_metadata(const io::Metadata& m, const std::string& path, const char* op, const char* arg) {
  const std::string& model = required(m, "model", path, op, arg);
  check(model == "MinkUNetTrainable", op, arg, path, ": holds a '", model, "', expected a MinkUNetTrainable");
  ModelInfo info;
  info.variant = parse_int(required(m, "variant", path, op, arg), "variant", path, op, arg);
  check(info.variant == 18 || info.variant == 34 || info.variant == 42, op, arg, path, ": metadata 'variant' must be ",
        "18, 34 or 42, got ", info.variant);
  info.width = parse_int(required(m, "width", path, op, arg), "width", path, op, arg);
  check(info.width >= 1 && info.width <= 256, op, arg, path, ": metadata 'width' must be in [1, 256], got ",
        info.width);
  info.in_channels = parse_int(required(m, "in_channels", path, op, arg), "in_channels", path, op, arg);
  check(info.in_channels == 4, op, arg, path, ": metadata 'in_channels' must be 4 (", k_features, "), got ",
        info.in_channels);
  info.num_classes = parse_int(required(m, "num_classes", path, op, arg), "num_classes", path, op, arg);
  check(info.num_classes == k_num_classes, op, arg, path, ": metadata 'num_classes' must be ", k_num_classes,
        " (SemanticKITTI train ids), got ", info.num_classes);
  const std::string& features = required(m, "features", path, op, arg);
  check(features == k_features, op, arg, path, ": the model was trained on features '", features,
        "', this program computes '", k_features, "'");
  const std::string& labels = required(m, "labels", path, op, arg);
  check(labels == k_labels, op, arg, path, ": the model's labels are '", labels, "', expected '", k_labels, "'");
  const std::string& voxel = required(m, "voxel_size", path, op, arg);
  char* end = nullptr;
  info.voxel_size = std::strtod(voxel.c_str(), &end);
  check(end != voxel.c_str() && *end == '\0' && std::isfinite(info.voxel_size) && info.voxel_size >= 0.01 &&
            info.voxel_size <= 10,
        op, arg, path, ": metadata 'voxel_size' must be a number in [0.01, 10] metres, got '", voxel, "'");
  const std::string& classes = required(m, "classes", path, op, arg);
  std::size_t begin = 0;
  while (begin < classes.size()) {
    std::size_t comma = classes.find(',', begin);
    if (comma == std::string::npos) comma = classes.size();
    const int c = parse_int(classes.substr(begin, comma - begin), "classes", path, op, arg);
    check(c >= 0 && c < k_num_classes, op, arg, path, ": metadata 'classes' holds ", c, ", outside [0, ", k_num_classes,
          ")");
    info.known_classes[static_cast<std::size_t>(c)] = true;
    begin = comma + 1;
  }
  check(std::find(info.known_classes.begin(), info.known_classes.end(), true) != info.known_classes.end(), op, arg,
        path, ": metadata 'classes' names no class");
  auto steps = m.find("steps");
  auto scans = m.find("train_scans");
  if (steps != m.end() && scans != m.end()) {
    info.description = steps->second + " steps on " + scans->second + " simulated scans";
  }
  return info;
}

std::string class_list(const std::array<bool, k_num_classes>& classes) {
  std::string out;
  for (int c = 0; c < k_num_classes; ++c) {
    if (!classes[static_cast<std::size_t>(c)]) continue;
    if (!out.empty()) out += ", ";
    out += k_class_names[static_cast<std::size_t>(c)];
  }
  return out.empty() ? "none" : out;
}

std::array<bool, k_num_classes> labelled_classes(const Array& confusion) {
  const Array cpu = confusion.to(Device::cpu());
  const std::int64_t* cm = cpu.data<std::int64_t>();
  std::array<bool, k_num_classes> out{};
  for (int c = 0; c < k_num_classes; ++c) {
    for (int p = 0; p < k_num_classes; ++p) out[static_cast<std::size_t>(c)] |= cm[c * k_num_classes + p] > 0;
  }
  return out;
}

Scores score_classes(const Array& confusion, const std::array<bool, k_num_classes>& include) {
  check(confusion.shape() == Shape{k_num_classes, k_num_classes} && confusion.dtype() == DType::i64, "score_classes",
        "confusion", "expected a (", k_num_classes, ", ", k_num_classes, ") int64 matrix, got ", confusion.describe());
  const Array cpu = confusion.to(Device::cpu());
  const std::vector<double> iou = nn::iou_per_class(cpu);
  const std::int64_t* cm = cpu.data<std::int64_t>();
  const std::array<bool, k_num_classes> present = labelled_classes(cpu);
  Table table({"class", "points", "IoU %"});
  Scores s;
  double sum = 0;
  for (int c = 0; c < k_num_classes; ++c) {
    const auto k = static_cast<std::size_t>(c);
    if (!include[k] || !present[k]) continue;
    std::int64_t count = 0;
    for (int p = 0; p < k_num_classes; ++p) count += cm[c * k_num_classes + p];
    sum += iou[k];
    ++s.classes;
    table.add({k_class_names[k], grouped(count), fixed(100 * iou[k], 1)});
  }
  s.table = table.str(1);
  s.miou = s.classes > 0 ? sum / s.classes : 0.0;
  return s;
}

}  // namespace lattice::cli::seg
