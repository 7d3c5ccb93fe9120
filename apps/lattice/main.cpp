// `lattice`: the command-line program.
//   lattice info              what this build can do (backends, BLAS, threads, devices)
//   lattice demo [FILE] ...   voxelize a scan and run MinkUNet forward, per-layer table
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
