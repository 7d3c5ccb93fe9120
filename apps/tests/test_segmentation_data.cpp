// The segmentation data shared by `lattice train` and `lattice demo --model`:
// label mapping, colours, samples, predictions, label lookup, model metadata.
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/segmentation_data.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::cli::seg {
namespace {

using lattice::testing::expect_error;
using lattice::testing::TempDir;

TEST(AppSegData, LearningMapFoldsMovingClassesAndIgnoresInstanceBits) {
  EXPECT_EQ(train_id(10), 0);
  EXPECT_EQ(train_id(252), 0);  // moving-car
  EXPECT_EQ(train_id((7u << 16) | 10u), 0);
  EXPECT_EQ(train_id(30), 5);
  EXPECT_EQ(train_id(254), 5);  // moving-person
  EXPECT_EQ(train_id(256), 4);  // moving-on-rails -> other-vehicle
  EXPECT_EQ(train_id(40), 8);
  EXPECT_EQ(train_id(60), 8);  // lane-marking -> road
  EXPECT_EQ(train_id(81), 18);
  EXPECT_EQ(train_id(0), k_ignore);
  EXPECT_EQ(train_id(1), k_ignore);
  EXPECT_EQ(train_id(52), k_ignore);  // other-structure
  EXPECT_EQ(train_id(99), k_ignore);  // other-object
  // Every train id is reached by its own raw class (learning_map_inv).
  const std::uint32_t inv[k_num_classes] = {10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72, 80, 81};
  for (int c = 0; c < k_num_classes; ++c) EXPECT_EQ(train_id(inv[c]), c);
}

TEST(AppSegData, ColoursAreTheYamlBgrReversed) {
  EXPECT_EQ(class_color(0), (Rgb{100, 150, 245}));   // car: [245, 150, 100]
  EXPECT_EQ(class_color(8), (Rgb{255, 0, 255}));     // road: [255, 0, 255]
  EXPECT_EQ(class_color(12), (Rgb{255, 200, 0}));    // building: [0, 200, 255]
  EXPECT_EQ(class_color(14), (Rgb{0, 175, 0}));      // vegetation: [0, 175, 0]
  EXPECT_EQ(class_color(16), (Rgb{150, 240, 80}));   // terrain: [80, 240, 150]
  EXPECT_EQ(class_color(17), (Rgb{255, 240, 150}));  // pole: [150, 240, 255]
  EXPECT_EQ(class_color(k_ignore), k_ignore_color);
  expect_error<ValueError>([] { class_color(19); }, {"class_color", "19"});
}

// Four points in two 1 m voxels; labels: car car road | unlabeled.
io::PointCloud tiny_cloud(bool with_labels) {
  io::PointCloud c;
  c.positions = Array::from_vector(std::vector<float>{0.1f, 0.1f, 0.1f, 0.2f, 0.2f, 0.2f, 0.3f, 0.3f, 0.3f,  //
                                                      5.5f, 0.5f, 0.5f},
                                   Shape{4, 3}, Device::cpu());
  c.fields.emplace_back("remission",
                        Array::from_vector(std::vector<float>{0.2f, 0.4f, 0.6f, 1.0f}, Shape{4}, Device::cpu()));
  if (with_labels) {
    c.labels = Array::from_vector(std::vector<std::uint32_t>{10, 252, 40, 0}, Shape{4}, Device::cpu());
  }
  return c;
}

TEST(AppSegData, SampleHasMeanFeaturesAndMajorityVoxelLabels) {
  const io::PointCloud cloud = tiny_cloud(true);
  const Sample s = make_sample(cloud, 1.0, Device::cpu(), true, "test");
  ASSERT_EQ(s.points, 4);
  ASSERT_EQ(s.x.rows(), 2);
  ASSERT_EQ(s.point_voxel.size(), 4u);
  EXPECT_EQ(s.point_voxel[0], s.point_voxel[1]);
  EXPECT_EQ(s.point_voxel[0], s.point_voxel[2]);
  EXPECT_NE(s.point_voxel[0], s.point_voxel[3]);
  EXPECT_EQ(s.point_labels, (std::vector<std::int32_t>{0, 0, 8, k_ignore}));
  const Array feats = s.x.feats().to(Device::cpu());
  const float* f = feats.data<float>();
  const std::int64_t a = s.point_voxel[0], b = s.point_voxel[3];
  EXPECT_NEAR(f[4 * a + 0], 0.2f, 1e-6);
  EXPECT_NEAR(f[4 * a + 3], 0.4f, 1e-6);  // mean remission
  EXPECT_NEAR(f[4 * b + 0], 5.5f, 1e-6);
  const Array vl = s.voxel_labels.to(Device::cpu());
  EXPECT_EQ(vl.data<std::int32_t>()[a], 0);         // car 2 : road 1
  EXPECT_EQ(vl.data<std::int32_t>()[b], k_ignore);  // only unlabeled points
  std::array<bool, k_num_classes> expected{};
  expected[0] = true;
  EXPECT_EQ(s.voxel_classes, expected);
}

TEST(AppSegData, VoxelLabelTiesGoToTheLowerIdAndLabelsAreOptional) {
  io::PointCloud cloud = tiny_cloud(true);
  cloud.labels = Array::from_vector(std::vector<std::uint32_t>{40, 10, 1, 72}, Shape{4}, Device::cpu());
  const Sample s = make_sample(cloud, 1.0, Device::cpu(), true, "test");
  const Array vl = s.voxel_labels.to(Device::cpu());
  EXPECT_EQ(vl.data<std::int32_t>()[s.point_voxel[0]], 0);  // road 1 : car 1 -> car
  EXPECT_EQ(vl.data<std::int32_t>()[s.point_voxel[3]], 16);
  const Sample unlabelled = make_sample(cloud, 1.0, Device::cpu(), false, "test");
  EXPECT_TRUE(unlabelled.point_labels.empty());
  EXPECT_FALSE(unlabelled.voxel_labels.defined());
  EXPECT_EQ(make_sample(tiny_cloud(false), 1.0, Device::cpu(), true, "test").point_labels.size(), 0u);
  io::PointCloud empty;
  empty.positions = Array::empty(Shape{0, 3}, DType::f32, Device::cpu());
  expect_error<ValueError>([&] { make_sample(empty, 1.0, Device::cpu(), true, "my op"); }, {"my op", "no points"});
}

TEST(AppSegData, PointPredictionsTakeTheirVoxelsArgmaxTiesLow) {
  const Sample s = make_sample(tiny_cloud(false), 1.0, Device::cpu(), false, "test");
  std::vector<float> logits(static_cast<std::size_t>(s.x.capacity() * k_num_classes), 0.0f);
  const std::int32_t a = s.point_voxel[0], b = s.point_voxel[3];
  logits[static_cast<std::size_t>(a * k_num_classes + 14)] = 3.0f;
  logits[static_cast<std::size_t>(b * k_num_classes + 5)] = 2.0f;
  logits[static_cast<std::size_t>(b * k_num_classes + 9)] = 2.0f;  // tie with 5: 5 wins
  const SparseTensor t =
      s.x.replace_feats(Array::from_vector(logits, Shape{s.x.capacity(), k_num_classes}, Device::cpu()));
  EXPECT_EQ(point_predictions(t, s.point_voxel), (std::vector<std::int32_t>{14, 14, 14, 5}));
  expect_error<ValueError>([&] { point_predictions(s.x, s.point_voxel); }, {"point_predictions", "19 channels"});
}

TEST(AppSegData, FindsSemanticKittiLabelsBesideOrInLabelsFolder) {
  TempDir dir;
  std::filesystem::create_directories(dir / "seq/velodyne");
  std::filesystem::create_directories(dir / "seq/labels");
  lattice::testing::write_file(dir / "seq/velodyne/000001.bin", "");
  EXPECT_FALSE(find_kitti_labels(dir / "seq/velodyne/000001.bin").has_value());
  lattice::testing::write_file(dir / "seq/labels/000001.label", "");
  EXPECT_EQ(find_kitti_labels(dir / "seq/velodyne/000001.bin"), dir / "seq/labels/000001.label");
  lattice::testing::write_file(dir / "seq/velodyne/000001.label", "");  // beside it: preferred
  EXPECT_EQ(find_kitti_labels(dir / "seq/velodyne/000001.bin"), dir / "seq/velodyne/000001.label");
  // A folder of that name is not a label file.
  std::filesystem::create_directories(dir / "x/000002.label");
  EXPECT_FALSE(find_kitti_labels(dir / "x/000002.bin").has_value());
}

TEST(AppSegData, ModelMetadataRoundTripsAndIsChecked) {
  ModelInfo info;
  info.variant = 34;
  info.width = 8;
  info.voxel_size = 0.25;
  info.known_classes[0] = info.known_classes[8] = info.known_classes[18] = true;
  const io::Metadata m = model_metadata(info, 150, 32, 2000, 7);
  EXPECT_EQ(m.at("classes"), "0,8,18");
  const ModelInfo back = parse_model_metadata(m, "m.safetensors", "op", "--model");
  EXPECT_EQ(back.variant, 34);
  EXPECT_EQ(back.width, 8);
  EXPECT_DOUBLE_EQ(back.voxel_size, 0.25);
  EXPECT_EQ(back.known_classes, info.known_classes);
  EXPECT_EQ(back.description, "150 steps on 32 simulated scans");
  EXPECT_EQ(class_list(back.known_classes), "car, road, traffic-sign");

  auto with = [&](const std::string& key, const std::string& value) {
    io::Metadata copy = m;
    copy[key] = value;
    return copy;
  };
  io::Metadata missing = m;
  missing.erase("width");
  expect_error<ValueError>([&] { parse_model_metadata(missing, "m.safetensors", "op", "--model"); },
                           {"[op] argument '--model'", "m.safetensors", "'width' is missing"});
  expect_error<ValueError>([&] { parse_model_metadata(with("model", "ResNet"), "f", "op", "--model"); },
                           {"'ResNet'", "MinkUNetTrainable"});
  expect_error<ValueError>([&] { parse_model_metadata(with("width", "0"), "f", "op", "--model"); }, {"'width'"});
  expect_error<ValueError>([&] { parse_model_metadata(with("width", "8x"), "f", "op", "--model"); },
                           {"not an integer"});
  expect_error<ValueError>([&] { parse_model_metadata(with("features", "xyz"), "f", "op", "--model"); },
                           {"features 'xyz'"});
  expect_error<ValueError>([&] { parse_model_metadata(with("voxel_size", "-1"), "f", "op", "--model"); },
                           {"'voxel_size'"});
  expect_error<ValueError>([&] { parse_model_metadata(with("classes", "0,19"), "f", "op", "--model"); },
                           {"'classes' holds 19"});
  expect_error<ValueError>([&] { parse_model_metadata(with("classes", ""), "f", "op", "--model"); },
                           {"names no class"});
}

TEST(AppSegData, ScoresOnlyIncludedClassesPresentInTheLabels) {
  // labels: 3 car (2 right, 1 as road), 1 road (right); predictions also 1 person.
  std::vector<std::int64_t> cm(k_num_classes * k_num_classes, 0);
  cm[0 * k_num_classes + 0] = 2;
  cm[0 * k_num_classes + 8] = 1;
  cm[8 * k_num_classes + 8] = 1;
  cm[14 * k_num_classes + 5] = 4;  // vegetation predicted as person
  const Array c = Array::from_vector(cm, Shape{k_num_classes, k_num_classes}, Device::cpu());
  std::array<bool, k_num_classes> include{};
  include[0] = include[8] = include[5] = true;  // person: not in the labels, so not scored
  const Scores s = score_classes(c, include);
  EXPECT_EQ(s.classes, 2);
  EXPECT_NEAR(s.miou, (2.0 / 3.0 + 1.0 / 2.0) / 2, 1e-12);
  EXPECT_NE(s.table.find("car"), std::string::npos);
  EXPECT_EQ(s.table.find("person"), std::string::npos);
  EXPECT_EQ(s.table.find("vegetation"), std::string::npos);
}

}  // namespace
}  // namespace lattice::cli::seg
