// `lattice demo [FILE]`: read a scan (or simulate the built-in one), voxelize
// it, run MinkUNet forward with seeded weights and print a per-layer table.
// With --model, the trained-model demo of cmd_demo_model.cpp instead.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "lattice/args.hpp"
#include "lattice/commands.hpp"
#include "lattice/lattice.hpp"
#include "lattice/models/minkunet.hpp"
#include "lattice/segmentation_data.hpp"
#include "lattice/table.hpp"

namespace lattice::cli {

namespace {

DType parse_dtype(const std::string& s) {
  if (s == "float32" || s == "f32") return DType::f32;
  if (s == "float16" || s == "f16") return DType::f16;
  if (s == "bfloat16" || s == "bf16") return DType::bf16;
  fail("lattice demo", "--dtype", "expected float32, float16 or bfloat16, got '", s, "'");
}

struct Input {
  std::string description;
  io::PointCloud cloud;
};

Input load_input(const Args& args) {
  if (!args.positional().empty()) {
    check(args.positional().size() == 1, "lattice demo", "FILE", "expected one file, got ", args.positional().size());
    const std::string path = args.positional()[0];
    io::PointCloud raw = io::read_point_cloud(path);
    io::PointCloud cloud = io::drop_non_finite(raw);
    std::string d = path + " (" + grouped(cloud.size()) + " points";
    if (cloud.size() != raw.size()) d += ", " + grouped(raw.size() - cloud.size()) + " non-finite dropped";
    return {d + ")", std::move(cloud)};
  }
  sim::LidarSceneOptions opts;
  opts.seed = static_cast<std::uint64_t>(args.int_or("scene-seed", 0));
  opts.azimuth_steps = static_cast<int>(args.int_or("azimuth-steps", opts.azimuth_steps));
  opts.sweeps = static_cast<int>(args.int_or("sweeps", 1));
  io::PointCloud cloud = sim::simulate_lidar_scan(opts);
  return {"built-in simulated 64-beam LiDAR street scan (seed " + std::to_string(opts.seed) + ", " +
              grouped(cloud.size()) + " points)",
          std::move(cloud)};
}

struct LayerRow {
  OpRecord conv;  // the layer's main op (a convolution when it has one)
  bool has_conv = false;
  double total_ms = 0;
  double relation_ms = 0;
};

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
  // With a trained model the demo segments the scan (cmd_demo_model.cpp).
  for (const std::string& a : argv) {
    if (a == "--model" || a.rfind("--model=", 0) == 0) return cmd_demo_model(argv);
  }
  const Args args(
      argv,
      {"voxel-size", "dtype", "threads", "width", "seed", "scene-seed", "azimuth-steps", "sweeps", "runs", "device"},
      {"inference"});
  if (auto t = args.value("threads")) set_cpu_threads(static_cast<int>(args.int_or("threads", 0)));
  const double voxel_size = args.double_or("voxel-size", 0.05);
  const DType dtype = parse_dtype(args.string_or("dtype", "float32"));
  const int runs = static_cast<int>(args.int_or("runs", 1));
  // The GPU when there is one, unless told otherwise.
  const std::string device_arg = args.string_or("device", "auto");
  const Device device =
      device_arg == "auto" ? (cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu()) : parse_device(device_arg);
  if (device.is_cuda()) {
    check<DeviceError>(device.index < cuda_device_count(), "lattice demo", "--device", device.str(),
                       " is not available (", cuda_device_count(), " CUDA devices visible)");
  }
  check(runs >= 0 && runs <= 1000, "lattice demo", "--runs", "must be in [0, 1000], got ", runs);

  const auto t_load = std::chrono::steady_clock::now();
  Input input = load_input(args);
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();
  check(input.cloud.size() > 0, "lattice demo", "FILE", "the scan has no points");

  // A fresh manager: the first forward pass builds every relation (end to end).
  auto manager = CoordinateManager::create();
  TraceSession voxel_trace;
  ops::Voxelized vox = ops::voxelize(input.cloud.positions.to(device), seg::point_features(input.cloud).to(device),
                                     {.voxel_size = voxel_size, .manager = manager});
  const double voxelize_ms = voxel_trace.records().back().total_ms;
  SparseTensor x = vox.tensor.replace_feats(vox.tensor.feats().astype(dtype));

  models::MinkUNetConfig config;
  config.width = static_cast<int>(args.int_or("width", 32));
  // --inference: batch norm with running statistics, fused into the convolutions.
  config.batch_statistics = !args.flag("inference");
  const models::MinkUNet model(config, static_cast<std::uint64_t>(args.int_or("seed", 0)), dtype, device);

  const BackendInfo info = backend_info();
  std::printf("lattice %s demo\n", info.version.c_str());
  std::printf("input:      %s, read in %.1f ms\n", input.description.c_str(), load_ms);
  std::printf("voxelize:   %s voxels at %.3g m (mean of x, y, z, intensity) in %.1f ms\n", grouped(x.rows()).c_str(),
              voxel_size, voxelize_ms);
  std::printf("model:      MinkUNet width %d, %s parameters, %s, seeded untrained weights, %s\n", config.width,
              grouped(model.num_parameters()).c_str(), std::string(dtype_name(dtype)).c_str(),
              config.batch_statistics ? "batch-statistics BN" : "inference BN fused into the convolutions");
  if (device.is_cpu()) {
    std::printf("device:     cpu, %d threads, %s\n\n", info.cpu_threads, info.blas.c_str());
  } else {
    const auto& d = info.cuda_devices[static_cast<std::size_t>(device.index)];
    std::printf("device:     %s, %s (tier %s), CUDA %s; times are device times (CUDA events)\n\n", device.str().c_str(),
                d.name.c_str(), d.tier.c_str(), info.cuda_runtime.c_str());
  }

  std::vector<OpRecord> records;
  SparseTensor logits;
  const auto t0 = std::chrono::steady_clock::now();
  {
    TraceSession trace;
    logits = model.forward(x);
    synchronize(device);
    records = trace.records();
  }
  double end_to_end_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (device.is_cuda()) {
    // Device time of the traced pass: the sum of its ops (the wall clock above includes tracing overhead).
    end_to_end_ms = 0;
    for (const OpRecord& r : records) end_to_end_ms += r.total_ms;
  }

  // One row per layer label, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, LayerRow> layers;
  double conv_flops = 0, relation_ms = 0, conv_ms = 0, other_ms = 0;
  for (const OpRecord& r : records) {
    auto [it, inserted] = layers.try_emplace(r.layer);
    if (inserted) order.push_back(r.layer);
    LayerRow& row = it->second;
    row.total_ms += r.total_ms;
    row.relation_ms += r.relation_ms;
    const bool is_conv = r.flops > 0;
    // The layer's row shows its convolution, or else its first op.
    if (inserted || (is_conv && !row.has_conv)) row.conv = r;
    row.has_conv = row.has_conv || is_conv;
    conv_flops += r.flops;
    relation_ms += r.relation_ms;
    (is_conv ? conv_ms : other_ms) += is_conv ? r.total_ms - r.relation_ms : r.total_ms;
  }
  Table table({"layer", "op", "voxels in", "voxels out", "edges", "FLOPs", "map ms", "time ms", "GFLOP/s", "route"});
  for (const std::string& name : order) {
    const LayerRow& row = layers[name];
    const OpRecord& c = row.conv;
    const double gflops = row.total_ms > 0 ? c.flops / (row.total_ms * 1e6) : 0;
    std::string op = c.op;
    if (c.channels_in)
      op.append(" ").append(std::to_string(c.channels_in)).append("->").append(std::to_string(c.channels_out));
    table.add({name, op, grouped(c.rows_in), grouped(c.rows_out), row.has_conv ? grouped(c.edges) : "",
               row.has_conv ? si(c.flops) : "", row.has_conv ? fixed(row.relation_ms, 2) : "", fixed(row.total_ms, 2),
               row.has_conv ? fixed(gflops, 1) : "", c.route});
  }
  table.add_rule();
  table.add({"total", "", grouped(x.rows()), grouped(logits.rows()), "", si(conv_flops), fixed(relation_ms, 1),
             fixed(end_to_end_ms, 1), fixed(conv_flops / (end_to_end_ms * 1e6), 1), ""});
  std::fputs(table.str().c_str(), stdout);
  std::printf(
      "\n(time ms: the layer's convolution, batch norm, ReLU and residual add; map ms: relation building,\n"
      " included in time ms. The first pass builds every relation: end to end.)\n\n");
  std::printf("end to end (relations built):  %8.1f ms  = relations %.1f + convolutions %.1f + other ops %.1f\n",
              end_to_end_ms, relation_ms, conv_ms, other_ms);

  // Where the time goes, by op.
  std::map<std::string, std::pair<int, double>> by_op;
  for (const OpRecord& r : records) {
    by_op[r.op].first += 1;
    by_op[r.op].second += r.total_ms;
  }
  std::printf("by op:     ");
  for (const auto& [name, v] : by_op) std::printf(" %s %d x %.1f ms;", name.c_str(), v.first, v.second);
  std::printf("\n");

  if (runs > 0) {
    double best = 1e300, sum = 0;
    for (int r = 0; r < runs; ++r) {
      const auto s = std::chrono::steady_clock::now();
      logits = model.forward(x);
      synchronize(device);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count();
      best = std::min(best, ms);
      sum += ms;
    }
    std::printf("cached relations (%d run%s):     %8.1f ms  best, %.1f ms mean, %.1f GFLOP/s\n", runs,
                runs == 1 ? "" : "s", best, sum / runs, conv_flops / (best * 1e6));
  }
  std::printf("output:     logits %s x %lld on %s voxels (untrained: predictions not meaningful yet)\n",
              grouped(logits.rows()).c_str(), static_cast<long long>(logits.channels()),
              grouped(logits.rows()).c_str());
  return 0;
}

}  // namespace lattice::cli
