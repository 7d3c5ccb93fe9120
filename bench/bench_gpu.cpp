// GPU benchmark harness (../shared/PERF.md).
//
//   bench_gpu [--data DIR] [--json FILE] [--runs N] [--quick]
//
// On one device, in one run: the ceilings (device-to-device copy bandwidth,
// cuBLAS dense GEMM in float16, float32 and TF32), then
//   * MinkUNet end to end on the real SemanticKITTI scan (and the built-in
//     scan): coordinates and features on the device -> logits on the device,
//     every relation built (a fresh coordinate set per run); float16, float32
//     and float32 with TF32; also with relations cached, and as a CUDA graph;
//   * relation building for one subm k3 map (hash + relation + the view the
//     default route uses);
//   * cached single layers: subm k3 C = 32/64/128/256, k2 s2 conv, k2 s2
//     transposed conv onto the finer level, subm k5.
// Each case prints FLOPs, median and min time (CUDA events, >= 20 timed runs
// after warm-up), TFLOP/s, minimum bytes, compute_ratio (achieved / dense GEMM
// rate of the same dtype) and floor_ratio (max(FLOPs / GEMM rate, bytes /
// copy bandwidth) / time). Results go to JSON; a short table comes last.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "gpu_harness.hpp"
#include "lattice/lattice.hpp"
#include "lattice/models/minkunet.hpp"
#include "lattice/models/minkunet_train.hpp"

namespace {

using namespace lattice;
using namespace lattice::bench;

void count_network(const models::MinkUNet& net, const SparseTensor& x, double& flops, double& bytes) {
  TraceSession trace;
  net.forward(x);
  flops = bytes = 0;
  const double item = static_cast<double>(itemsize(x.dtype()));
  for (const OpRecord& r : trace.records()) {
    flops += r.flops;
    bytes += item * (static_cast<double>(r.rows_in) * r.channels_in + static_cast<double>(r.rows_out) * r.channels_out);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = "../shared/data", json_path = "bench_gpu.json";
  int runs = 20;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc)
      data_dir = argv[++i];
    else if (a == "--json" && i + 1 < argc)
      json_path = argv[++i];
    else if (a == "--runs" && i + 1 < argc)
      runs = std::max(20, std::atoi(argv[++i]));
    else if (a == "--quick")
      quick = true;
  }
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu: no CUDA device; nothing to measure\n");
    return 0;
  }
  const BackendInfo info = backend_info();
  const std::string gpu = info.cuda_devices[0].name;
  std::printf("device: %s (tier %s)\n", gpu.c_str(), info.cuda_devices[0].tier.c_str());
  const Ceilings ceil = measure_ceilings(quick);
  std::printf("ceilings: copy %.2f TB/s (read+write), GEMM f16 %.1f, f32 %.1f, tf32 %.1f TFLOP/s\n",
              ceil.copy_bytes_per_s / 1e12, ceil.gemm_f16 / 1e12, ceil.gemm_f32 / 1e12, ceil.gemm_tf32 / 1e12);

  // Inputs: the real scan if present, else the built-in one.
  io::PointCloud cloud;
  std::string scan_name;
  const std::filesystem::path kitti = std::filesystem::path(data_dir) / "semantickitti/000000.bin";
  if (std::filesystem::exists(kitti)) {
    cloud = io::read_kitti_bin(kitti);
    scan_name = "semantickitti-000000";
  } else {
    cloud = sim::simulate_lidar_scan({});
    scan_name = "built-in-scan";
  }
  const std::int64_t n_points = cloud.size();
  std::vector<float> f4(static_cast<std::size_t>(n_points * 4));
  const float* p = cloud.positions.data<float>();
  const Array* remission = cloud.field("remission");
  for (std::int64_t i = 0; i < n_points; ++i) {
    for (int a = 0; a < 3; ++a) f4[static_cast<std::size_t>(4 * i + a)] = p[3 * i + a];
    f4[static_cast<std::size_t>(4 * i + 3)] = remission ? remission->data<float>()[i] : 1.0f;
  }
  const ops::Voxelized vox = ops::voxelize(cloud.positions.to(k_dev),
                                           Array::from_vector(f4, Shape{n_points, 4}).to(k_dev), {.voxel_size = 0.05});
  const std::int64_t voxels = vox.tensor.rows();
  const Array coords = vox.tensor.coords().rows(0, voxels).clone();
  std::printf("input: %s, %lld points -> %lld voxels at 0.05 m\n\n", scan_name.c_str(),
              static_cast<long long>(n_points), static_cast<long long>(voxels));
  BenchInput input;
  input.name = scan_name;
  input.points = cloud.positions.to(k_dev);
  input.point_feats = Array::from_vector(f4, Shape{n_points, 4}).to(k_dev);
  input.voxels = voxels;
  input.coords = coords;
  input.voxel_feats = vox.tensor.feats().rows(0, voxels).clone();
  input.inverse_rows = vox.inverse_rows;

  std::vector<Row> rows;
  // ---- MinkUNet end to end ---------------------------------------------------------
  for (auto [dtype, tf32] : {std::pair{DType::f16, false}, std::pair{DType::f32, false}, std::pair{DType::f32, true}}) {
    const Array feats = vox.tensor.feats().rows(0, voxels).astype(dtype);
    models::MinkUNetConfig cfg;
    cfg.batch_statistics = false;  // inference: BN with running statistics
    cfg.allow_tf32 = tf32;
    const models::MinkUNet net(cfg, 0, dtype, k_dev);
    double flops = 0, bytes = 0;
    count_network(net, fresh(coords, feats, voxels), flops, bytes);
    // Fresh coordinate sets are made before timing (making one copies its count to the device).
    std::vector<SparseTensor> inputs;
    for (int i = 0; i < runs + 3; ++i) inputs.push_back(fresh(coords, feats, voxels));
    std::size_t next = 0;
    reset_peak();
    const Timing e2e = time_it([&] { net.forward(inputs[next++]); }, runs);
    inputs.clear();
    const std::int64_t peak = peak_pool_bytes();
    Row r = make_row("minkunet end-to-end", dtype, tf32, flops, bytes, e2e, ceil);
    r.voxels_in = r.voxels_out = voxels;
    r.note = "peak pool " + std::to_string(peak >> 20) + " MiB";
    rows.push_back(r);
    const SparseTensor cached = fresh(coords, feats, voxels);
    net.forward(cached);
    const Timing t_cached = time_it([&] { net.forward(cached); }, runs);
    rows.push_back(make_row("minkunet cached relations", dtype, tf32, flops, bytes, t_cached, ceil));
    if (dtype == DType::f16) {
      // The whole end-to-end pass as one CUDA graph (capture fails if anything waits for the host).
      const SparseTensor x = fresh(coords, feats, voxels);
      synchronize(k_dev);
      cudaGraph_t graph;
      CHECK_CUDA(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeGlobal));
      SparseTensor y = net.forward(x);
      CHECK_CUDA(cudaStreamEndCapture(stream(), &graph));
      cudaGraphExec_t exec;
      CHECK_CUDA(cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch));
      const Timing tg = time_it([&] { CHECK_CUDA(cudaGraphLaunch(exec, stream())); }, runs);
      Row g = make_row("minkunet end-to-end, CUDA graph", dtype, tf32, flops, bytes, tg, ceil);
      g.note = "captured: zero host syncs";
      rows.push_back(g);
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
  }

  // ---- the built-in scan as a second input (MinkUNet float16 end to end) ------------------
  {
    const io::PointCloud sim_scan = sim::simulate_lidar_scan({});
    const ops::Voxelized sv =
        ops::voxelize(sim_scan.positions.to(k_dev), sim_scan.positions.to(k_dev), {.voxel_size = 0.05});
    const std::int64_t sn = sv.tensor.rows();
    const Array scoords = sv.tensor.coords().rows(0, sn).clone();
    const Array sfeats =
        ops::cat(sv.tensor,
                 sv.tensor.replace_feats(Array::full(Shape{sv.tensor.capacity(), 1}, DType::f32, 1.0, k_dev)))
            .feats()
            .rows(0, sn)
            .astype(DType::f16);
    models::MinkUNetConfig cfg;
    cfg.batch_statistics = false;
    const models::MinkUNet net(cfg, 0, DType::f16, k_dev);
    double flops = 0, bytes = 0;
    count_network(net, fresh(scoords, sfeats, sn), flops, bytes);
    std::vector<SparseTensor> inputs;
    for (int i = 0; i < runs + 3; ++i) inputs.push_back(fresh(scoords, sfeats, sn));
    std::size_t next = 0;
    const Timing e2e = time_it([&] { net.forward(inputs[next++]); }, runs);
    Row r = make_row("minkunet end-to-end, built-in scan", DType::f16, false, flops, bytes, e2e, ceil);
    r.voxels_in = r.voxels_out = sn;
    r.note = std::to_string(sn) + " voxels";
    rows.push_back(r);
  }

  // ---- relation building ---------------------------------------------------------------
  {
    const Array feats = Array::zeros(Shape{voxels, 1}, DType::f16, k_dev);
    const KernelSpec k3{Int3{3}, Int3{1}, Int3{0}, Int3{1}};
    std::vector<SparseTensor> inputs;
    for (int i = 0; i < runs + 3; ++i) inputs.push_back(fresh(coords, feats, voxels));
    std::size_t next = 0;
    const Timing t = time_it(
        [&] {
          const SparseTensor& x = inputs[next++];
          auto rel = x.manager()->relation(x.coordinate_set(), RelationKind::submanifold, k3, nullptr, "bench");
          rel->sorted_implicit_gemm_map(64);
        },
        runs);
    Row r = make_row("relation subm k3 (hash+map+sorted view)", DType::f16, false, 0,
                     static_cast<double>(voxels) * (16 + 27 * 4 * 3), t, ceil);
    r.voxels_in = r.voxels_out = voxels;
    r.note = "eager: includes host launch gaps";
    rows.push_back(r);
    // The same work replayed as a CUDA graph: device time alone.
    const SparseTensor x = fresh(coords, feats, voxels);
    synchronize(k_dev);
    cudaGraph_t graph;
    CHECK_CUDA(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeGlobal));
    {
      auto rel = x.manager()->relation(x.coordinate_set(), RelationKind::submanifold, k3, nullptr, "bench");
      rel->sorted_implicit_gemm_map(64);
    }
    CHECK_CUDA(cudaStreamEndCapture(stream(), &graph));
    cudaGraphExec_t exec;
    CHECK_CUDA(cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch));
    const Timing tg = time_it([&] { CHECK_CUDA(cudaGraphLaunch(exec, stream())); }, runs);
    Row rg = make_row("relation subm k3, CUDA graph", DType::f16, false, 0,
                      static_cast<double>(voxels) * (16 + 27 * 4 * 3), tg, ceil);
    rg.voxels_in = rg.voxels_out = voxels;
    rg.note = "device time";
    rows.push_back(rg);
    synchronize(k_dev);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  // ---- the per-shape tuner (opt-in): MinkUNet float16 with tuned tile shapes ----------
  {
    const Array feats = vox.tensor.feats().rows(0, voxels).astype(DType::f16);
    models::MinkUNetConfig cfg;
    cfg.batch_statistics = false;
    const models::MinkUNet net(cfg, 0, DType::f16, k_dev);
    double flops = 0, bytes = 0;
    count_network(net, fresh(coords, feats, voxels), flops, bytes);
    ops::set_conv_autotune(true);
    const SparseTensor cached = fresh(coords, feats, voxels);
    net.forward(cached);  // tunes every new shape once (waits for the device)
    synchronize(k_dev);
    const Timing t = time_it([&] { net.forward(cached); }, runs);
    std::vector<SparseTensor> inputs;
    for (int i = 0; i < runs + 3; ++i) inputs.push_back(fresh(coords, feats, voxels));
    std::size_t next = 0;
    const Timing e = time_it([&] { net.forward(inputs[next++]); }, runs);
    ops::set_conv_autotune(false);
    Row r = make_row("minkunet end-to-end, autotuned", DType::f16, false, flops, bytes, e, ceil);
    r.note = "set_conv_autotune(true)";
    rows.push_back(r);
    Row rc = make_row("minkunet cached relations, autotuned", DType::f16, false, flops, bytes, t, ceil);
    rows.push_back(rc);
  }

  // ---- cached single layers -------------------------------------------------------------
  auto layer = [&](const std::string& name, DType dtype, int cin, int cout,
                   const std::function<SparseTensor(const SparseTensor&, const Array&)>& op, const SparseTensor& base) {
    const std::int64_t n = base.rows();
    Array f = Array::full(Shape{base.capacity(), cin}, dtype, 0.5, k_dev);
    const SparseTensor x = base.replace_feats(f);
    const std::int64_t vol =
        name.find("k5") != std::string::npos ? 125 : (name.find("k3") != std::string::npos ? 27 : 8);
    const Array w = Array::full(Shape{vol, cin, cout}, dtype, 0.01, k_dev);
    TraceSession trace;
    const SparseTensor y = op(x, w);
    const OpRecord rec = trace.records().back();
    const double item = static_cast<double>(itemsize(dtype));
    const double bytes = item * (static_cast<double>(n) * cin + static_cast<double>(rec.rows_out) * cout +
                                 static_cast<double>(vol) * cin * cout) +
                         4.0 * static_cast<double>(rec.rows_out) * vol;
    const Timing t = time_it([&] { op(x, w); }, runs);
    Row r = make_row(name, dtype, false, rec.flops, bytes, t, ceil);
    r.voxels_in = n;
    r.voxels_out = rec.rows_out;
    r.edges = rec.edges;
    r.note = rec.route;
    rows.push_back(r);
  };
  const SparseTensor base = fresh(coords, Array::zeros(Shape{voxels, 1}, DType::f16, k_dev), voxels);
  for (DType dtype : {DType::f16, DType::f32}) {
    for (int c : {32, 64, 128, 256}) {
      layer(
          "subm k3 C=" + std::to_string(c), dtype, c, c,
          [](const SparseTensor& x, const Array& w) { return ops::subm_conv3d(x, w); }, base);
    }
    layer(
        "subm k5 C=32", dtype, 32, 32,
        [](const SparseTensor& x, const Array& w) { return ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = 5}); },
        base);
    layer(
        "conv k2 s2 C=64", dtype, 64, 64,
        [](const SparseTensor& x, const Array& w) {
          return ops::conv3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2});
        },
        base);
    const SparseTensor down = ops::conv3d(base, Array::zeros(Shape{8, 1, 1}, DType::f16, k_dev), std::nullopt,
                                          {.kernel_size = 2, .stride = 2});
    layer(
        "conv_transpose k2 s2 C=64 (target)", dtype, 64, 64,
        [&](const SparseTensor& x, const Array& w) {
          return ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2, .coordinates = base});
        },
        down);
  }

  // ---- convolution VJPs on one cached layer: input and weight gradient -----------------
  // FLOPs as the forward's (each gradient is one GEMM of the forward's size).
  for (DType dtype : {DType::f16, DType::f32}) {
    for (int c : {32, 64, 128}) {
      const Array w = Array::full(Shape{27, c, c}, dtype, 0.01, k_dev);
      const SparseTensor x = base.replace_feats(Array::full(Shape{base.capacity(), c}, dtype, 0.5, k_dev));
      TraceSession trace;
      const SparseTensor y = ops::subm_conv3d(x, w);
      const OpRecord rec = trace.records().back();
      const SparseTensor dy = y.replace_feats(Array::full(y.feats().shape(), dtype, 0.25, k_dev));
      const double bytes = static_cast<double>(itemsize(dtype)) * 2.0 * static_cast<double>(base.rows()) * c;
      for (const bool input : {true, false}) {
        const ops::GradRequest need{.input = input, .weight = !input, .bias = false};
        const Timing t = time_it([&] { (void)ops::subm_conv3d_backward(x, w, dy, {}, need); }, runs);
        Row r = make_row(std::string("subm k3 C=") + std::to_string(c) + (input ? " input grad" : " weight grad"),
                         dtype, false, rec.flops, bytes, t, ceil);
        r.voxels_in = r.voxels_out = base.rows();
        r.edges = rec.edges;
        r.note = input ? "mirrored sorted map, implicit GEMM" : "tensor-core per-offset x^T dy";
        rows.push_back(r);
      }
    }
  }

  // ---- training: one MinkUNet step (forward, loss, backward, AdamW) -------------------
  // The trainable module (models::MinkUNetTrainable: batch statistics, no fused
  // epilogue) on the real scan, relations cached after the first step as in a
  // training loop over a fixed input; FLOPs counted as 3x the forward's
  // (forward, input gradient, weight gradient).
  {
    double fwd_flops = 0, fwd_bytes = 0;
    {
      models::MinkUNetConfig cfg;
      cfg.batch_statistics = true;
      const models::MinkUNet ref(cfg, 0, DType::f32, k_dev);
      count_network(ref, fresh(coords, vox.tensor.feats().rows(0, voxels).clone(), voxels), fwd_flops, fwd_bytes);
    }
    std::vector<std::int32_t> lab(static_cast<std::size_t>(voxels));
    for (std::size_t i = 0; i < lab.size(); ++i) lab[i] = static_cast<std::int32_t>((i * 7919) % 19);
    const Array labels = Array::from_vector(lab, Shape{voxels}).to(k_dev);
    // Batch 2: the scan twice, as batch items 0 and 1 (PERF.md's training comparison).
    const std::int64_t n2 = 2 * voxels;
    Array coords2 = Array::empty(Shape{n2, 4}, DType::i32, Device::cpu());
    {
      const Array c1 = coords.to(Device::cpu());
      const std::int32_t* src = c1.data<std::int32_t>();
      std::int32_t* dst = coords2.data<std::int32_t>();
      for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t i = 0; i < voxels; ++i) {
          dst[(b * voxels + i) * 4] = static_cast<std::int32_t>(b);
          for (int a = 1; a < 4; ++a) dst[(b * voxels + i) * 4 + a] = src[i * 4 + a];
        }
    }
    coords2 = coords2.to(k_dev);
    std::vector<std::int32_t> lab2(static_cast<std::size_t>(n2));
    for (std::size_t i = 0; i < lab2.size(); ++i) lab2[i] = lab[i % lab.size()];
    const Array labels2 = Array::from_vector(lab2, Shape{n2}).to(k_dev);
    for (DType dtype : {DType::f32, DType::f16}) {
      models::MinkUNetTrainableConfig cfg;
      cfg.dtype = dtype;
      cfg.device = k_dev;
      models::MinkUNetTrainable net(cfg);
      net.train();
      const Array f1 = vox.tensor.feats().rows(0, voxels).astype(dtype);
      const SparseTensor x = fresh(coords, f1, voxels);
      nn::AdamW opt(net.parameters(), {});
      auto step_on = [&](const SparseTensor& in, const Array& y) {
        opt.zero_grad();
        const autograd::Variable logits = net.forward(autograd::Variable(in));
        autograd::backward(autograd::cross_entropy(logits, y));
        opt.step();
      };
      const Timing fwd = time_it([&] { (void)autograd::cross_entropy(net.forward(autograd::Variable(x)), labels); },
                                 std::max(5, runs / 4), 2);
      Row rf = make_row("minkunet train forward + loss", dtype, false, fwd_flops, fwd_bytes, fwd, ceil);
      rf.voxels_in = rf.voxels_out = voxels;
      rf.note = "batch statistics, graph recorded";
      rows.push_back(rf);
      const Timing t = time_it([&] { step_on(x, labels); }, std::max(5, runs / 4), 2);
      Row r = make_row("minkunet train step (fwd+bwd+AdamW)", dtype, false, 3 * fwd_flops, 3 * fwd_bytes, t, ceil);
      r.voxels_in = r.voxels_out = voxels;
      r.note = "batch 1 (94k voxels), width 32";
      rows.push_back(r);
      const Array h1 = f1.to(Device::cpu());
      Array f2 = Array::empty(Shape{n2, f1.dim(1)}, dtype, Device::cpu());
      std::memcpy(f2.raw(), h1.raw(), h1.nbytes());
      std::memcpy(static_cast<unsigned char*>(f2.raw()) + h1.nbytes(), h1.raw(), h1.nbytes());
      f2 = f2.to(k_dev);
      const SparseTensor x2 = fresh(coords2, f2, n2);
      const Timing t2 = time_it([&] { step_on(x2, labels2); }, std::max(5, runs / 4), 2);
      Row r2 = make_row("minkunet train step, batch 2", dtype, false, 6 * fwd_flops, 6 * fwd_bytes, t2, ceil);
      r2.voxels_in = r2.voxels_out = n2;
      r2.note = "the scan twice (2 x 94k voxels)";
      rows.push_back(r2);
      // Host enqueue time of one step (no wait) against the whole step: the
      // eager step is host-bound when the two are close.
      {
        synchronize(k_dev);
        const auto h0 = std::chrono::steady_clock::now();
        step_on(x, labels);
        const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - h0).count();
        synchronize(k_dev);
        const double all_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - h0).count();
        std::printf("train step host enqueue (%s): %.2f ms of %.2f ms\n", dtype_name(dtype).data(), host_ms, all_ms);
      }
      // The same step captured as one CUDA graph and replayed: device time
      // alone (capture fails if anything in the step waits for the host).
      {
        synchronize(k_dev);
        cudaGraph_t graph = nullptr;
        CHECK_CUDA(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeGlobal));
        std::string failure;
        try {
          step_on(x, labels);
        } catch (const std::exception& e) {
          failure = e.what();
        }
        const cudaError_t end = cudaStreamEndCapture(stream(), &graph);
        if (failure.empty() && end != cudaSuccess) failure = cudaGetErrorString(end);
        (void)cudaGetLastError();
        if (failure.empty()) {
          cudaGraphExec_t exec;
          CHECK_CUDA(cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch));
          const Timing tgr = time_it([&] { CHECK_CUDA(cudaGraphLaunch(exec, stream())); }, std::max(5, runs / 4), 2);
          Row rg = make_row("minkunet train step, CUDA graph", dtype, false, 3 * fwd_flops, 3 * fwd_bytes, tgr, ceil);
          rg.voxels_in = rg.voxels_out = voxels;
          rg.note = "batch 1, captured: zero host syncs";
          rows.push_back(rg);
          cudaGraphExecDestroy(exec);
        } else {
          std::printf("train step capture (%s) failed: %s\n", dtype_name(dtype).data(), failure.c_str());
        }
        if (graph != nullptr) cudaGraphDestroy(graph);
      }
      // Where a batch-1 step goes: device time per op and per VJP, one traced step.
      {
        TraceSession trace;
        step_on(x, labels);
        std::map<std::string, std::pair<double, int>> by_op;
        for (const OpRecord& rec : trace.records()) {
          auto& [ms, n] = by_op[rec.op];
          ms += rec.total_ms;
          ++n;
        }
        std::vector<std::pair<double, std::string>> sorted;
        for (const auto& [op, v] : by_op) sorted.emplace_back(v.first, op + " x" + std::to_string(v.second));
        std::sort(sorted.rbegin(), sorted.rend());
        std::printf("train step by op (%s, traced, ms):", dtype_name(dtype).data());
        for (std::size_t i = 0; i < std::min<std::size_t>(14, sorted.size()); ++i)
          std::printf("%s %s %.2f", i ? ";" : "", sorted[i].second.c_str(), sorted[i].first);
        std::printf("\n");
      }
    }
  }

  // ---- memory-bound op families (bench_gpu_ops.cpp) ----------------------------------
  op_cases(input, ceil, runs, rows);

  // ---- report -------------------------------------------------------------------------
  std::ofstream js(json_path);
  js << "{\n  \"device\": \"" << gpu << "\",\n  \"input\": \"" << scan_name << "\",\n  \"voxels\": " << voxels
     << ",\n  \"copy_tb_s\": " << ceil.copy_bytes_per_s / 1e12
     << ",\n  \"gemm_tflops\": {\"f16\": " << ceil.gemm_f16 / 1e12 << ", \"f32\": " << ceil.gemm_f32 / 1e12
     << ", \"tf32\": " << ceil.gemm_tf32 / 1e12 << "},\n  \"cases\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    js << "    {\"name\": \"" << r.name << "\", \"dtype\": \"" << r.dtype << "\", \"voxels_in\": " << r.voxels_in
       << ", \"voxels_out\": " << r.voxels_out << ", \"edges\": " << r.edges << ", \"flops\": " << r.flops
       << ", \"bytes\": " << r.bytes << ", \"median_ms\": " << r.median_ms << ", \"min_ms\": " << r.min_ms
       << ", \"tflops\": " << (r.flops / (r.median_ms * 1e9)) << ", \"compute_ratio\": " << r.compute_ratio
       << ", \"floor_ratio\": " << r.floor_ratio << ", \"note\": \"" << r.note << "\"}"
       << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  js << "  ]\n}\n";
  std::printf("%-42s %-9s %9s %9s %9s %8s %8s %8s  %s\n", "case", "dtype", "GFLOP", "median", "min", "TFLOP/s",
              "compute", "floor", "note");
  for (const Row& r : rows) {
    std::printf("%-42s %-9s %9.2f %7.3fms %7.3fms %8.2f %8.3f %8.3f  %s\n", r.name.c_str(), r.dtype.c_str(),
                r.flops / 1e9, r.median_ms, r.min_ms, r.flops / (r.median_ms * 1e9), r.compute_ratio, r.floor_ratio,
                r.note.c_str());
  }
  std::printf("(json: %s)\n", json_path.c_str());
  return 0;
}
