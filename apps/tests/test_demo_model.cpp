// `lattice demo --model` rejects model files that are not what `lattice
// train` writes, naming --model and the file, before it reads any scan.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/commands.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/segmentation_data.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::cli {
namespace {

using lattice::testing::expect_error;
using lattice::testing::TempDir;

// The metadata `lattice train` writes for a width-`width` MinkUNet18.
io::Metadata metadata_for(int width) {
  seg::ModelInfo info;
  info.width = width;
  info.known_classes[0] = info.known_classes[8] = true;
  return seg::model_metadata(info, 1, 1, 200, 0);
}

io::TensorDict weights_of_width(int width) {
  models::MinkUNetTrainableConfig config = models::MinkUNetTrainableConfig::variant(18);
  config.width = width;
  return models::MinkUNetTrainable(config).state_dict();
}

std::vector<std::string> demo_args(const TempDir& dir, const std::string& model) {
  // A scan file that does not exist: the model must be rejected before it is read.
  return {"--model", model, (dir / "no_scan.bin").string(), "--png", (dir / "x.png").string(), "--device", "cpu"};
}

TEST(AppDemoModel, RejectsWeightsThatDoNotFitTheMetadata) {
  TempDir dir;
  const std::string path = (dir / "m.safetensors").string();
  io::save_safetensors(path, weights_of_width(2), metadata_for(4));
  expect_error<ValueError>([&] { cmd_demo_model(demo_args(dir, path)); },
                           {"[lattice demo] argument '--model'", path, "do not fit MinkUNet18 width 4", "shape"});
}

TEST(AppDemoModel, RejectsOtherModelsAndMissingMetadata) {
  TempDir dir;
  const std::string other = (dir / "other.safetensors").string();
  io::Metadata m = metadata_for(2);
  m["model"] = "ResNetEncoder";
  io::save_safetensors(other, weights_of_width(2), m);
  expect_error<ValueError>([&] { cmd_demo_model(demo_args(dir, other)); },
                           {"argument '--model'", other, "'ResNetEncoder'"});
  const std::string bare = (dir / "bare.safetensors").string();
  io::save_safetensors(bare, weights_of_width(2));
  expect_error<ValueError>([&] { cmd_demo_model(demo_args(dir, bare)); },
                           {"argument '--model'", bare, "'model' is missing"});
  const std::string missing = (dir / "missing.safetensors").string();
  expect_error<IoError>([&] { cmd_demo_model(demo_args(dir, missing)); }, {"argument '--model'", missing});
}

TEST(AppDemoModel, RejectsAPngFolderThatDoesNotExistBeforeWorking) {
  TempDir dir;
  std::vector<std::string> args = demo_args(dir, (dir / "m.safetensors").string());
  args[4] = (dir / "no_folder" / "x.png").string();
  expect_error<IoError>([&] { cmd_demo_model(args); }, {"argument '--png'", "no_folder"});
}

}  // namespace
}  // namespace lattice::cli
