// `lattice`: the command-line program.
//   lattice info              what this build can do (backends, BLAS, threads, devices)
//   lattice demo [FILE] ...   voxelize a scan and run MinkUNet forward, per-layer table
//   lattice demo --model M    segment a scan with a trained model, scores, bird's-eye PNG
//   lattice train ...         train MinkUNet on simulated scans, report mIoU, save safetensors
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "lattice/commands.hpp"
#include "lattice/core/error.hpp"

namespace {

constexpr const char* k_usage = R"(usage: lattice <command> [options]

commands:
  info                     backends, CPU BLAS and threads, CUDA devices
  demo [FILE] [options]    voxelize FILE (or the built-in simulated LiDAR scan) at
                           0.05 m and run a MinkUNet forward pass; prints a table
                           per layer (voxels, edges, FLOPs, time, GFLOP/s, route)
     --voxel-size M        voxel edge in metres (default 0.05)
     --dtype float32|float16|bfloat16   feature dtype (default float32)
     --threads N           CPU threads (default: all cores)
     --width W             MinkUNet stem width (default 32; others scale)
     --seed S              weight seed (default 0)
     --scene-seed S        seed of the built-in scene (default 0)
     --azimuth-steps N     built-in scan: samples per revolution (default 2000)
     --sweeps N            built-in scan: aggregated sweeps (default 1)
     --runs N              timed cached runs after the first (default 1)
     --device cpu|cuda[:N] where to run (default: the GPU when there is one)
     --inference           batch norm from running statistics, fused into the
                           convolutions (default: batch statistics, separate ops)
  demo --model M.safetensors [FILE] [options]
                           segment FILE (default: the held-out simulated scan,
                           seed 3000) with a model saved by `lattice train`;
                           prints the predicted-class histogram and, when there
                           are SemanticKITTI labels (a .bin's .label beside it or
                           in ../labels), per-class IoU and mIoU over the classes
                           the model knows; writes a bird's-eye PNG coloured by
                           predicted class (ground truth on the right if labelled)
     --png FILE            the image (default bev.png)
     --device cpu|cuda[:N]|auto   where to run (default auto)
     --threads N           CPU threads (default: all cores)
     --scene-seed S        built-in scan: seed (default 3000)
     --azimuth-steps N     built-in scan: samples per revolution (default 2000)
  train [options]          train a MinkUNet for semantic segmentation on built-in
                           simulated LiDAR scans (SemanticKITTI's 19 train ids),
                           with a progress bar, evaluate point mIoU on held-out
                           scans, save the weights and the classes it saw
     --steps N             optimizer steps, one scan each (default 150)
     --width W             MinkUNet stem width (default 16; others scale)
     --variant 18|34|42    blocks per stage (default 18)
     --voxel-size M        voxel edge in metres (default 0.2)
     --lr LR               AdamW peak learning rate, cosine decay (default 4e-3)
     --seed S              weight seed (default 0)
     --train-scans N       distinct training scans, cycled (default 32)
     --eval-scans N        held-out scans for mIoU (default 2)
     --azimuth-steps N     simulated scans: samples per revolution (default 2000)
     --threads N           CPU threads (default: all cores)
     --device cpu|cuda[:N]|auto   where to train (default cpu)
     --dtype float32|float16|bfloat16   16-bit: mixed precision with float32
                           master weights (default float32; saved as float32)
     --out FILE            weights (default minkunet_train.safetensors)
  help                     this text

FILE may be a KITTI/SemanticKITTI .bin, a .pcd, a .ply or a .las file.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::fputs(k_usage, stdout);
    return args.empty() ? 1 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "info") return lattice::cli::cmd_info(args);
    if (command == "demo") return lattice::cli::cmd_demo(args);
    if (command == "train") return lattice::cli::cmd_train(args);
    std::fprintf(stderr, "lattice: unknown command '%s'\n\n%s", command.c_str(), k_usage);
    return 2;
  } catch (const lattice::Error& e) {
    std::fprintf(stderr, "lattice %s: error: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lattice %s: internal error: %s\n", command.c_str(), e.what());
    return 3;
  }
}
