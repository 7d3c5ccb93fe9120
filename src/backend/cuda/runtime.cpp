// CUDA runtime services: devices, streams, stream-ordered memory, copies,
// events and the sticky error slot.
#include <array>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/check.hpp"
#include "backend/cuda/errors.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_max_devices = 64;

void check_device(int device) {
  const int n = device_count();
  if (device < 0 || device >= n) {
    throw DeviceError(
        lattice::detail::concat("[cuda] device cuda:", device, " is not available (", n, " CUDA devices visible)"));
  }
}

// Keeps freed blocks in the device's pool instead of returning them to the
// driver: stream-ordered allocation then costs no driver call in steady state.
void init_pool(int device) {
  static std::once_flag flags[k_max_devices];
  std::call_once(flags[device], [device] {
    cudaMemPool_t pool = nullptr;
    LATTICE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    std::uint64_t threshold = std::numeric_limits<std::uint64_t>::max();
    LATTICE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  });
}

// Per thread and device: the current stream (null until first asked for).
thread_local std::array<cudaStream_t, k_max_devices> t_current{};

}  // namespace

bool compiled() { return true; }

int device_count() {
  static const int n = [] {
    int count = 0;
    // No driver or no device is "zero devices", not an error.
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return count;
  }();
  return n;
}

std::string device_name(int device) {
  check_device(device);
  cudaDeviceProp prop{};
  LATTICE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::string capability_tier(int device) {
  check_device(device);
  int major = 0;
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
#if defined(LATTICE_HAS_SM90A)
  if (major == 9) return "wgmma";
#endif
  return major >= 8 ? "mma" : "simt";
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return lattice::detail::concat(v / 1000, ".", (v % 1000) / 10);
}

void* current_stream(int device) {
  check_device(device);
  cudaStream_t& s = t_current[static_cast<std::size_t>(device)];
  if (s == nullptr) {
    // A non-blocking stream of our own: it does not serialise with the legacy
    // default stream and can be captured into a CUDA graph.
    LATTICE_CUDA_CHECK(cudaSetDevice(device));
    LATTICE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

void set_current_stream(int device, void* stream) {
  check_device(device);
  t_current[static_cast<std::size_t>(device)] = static_cast<cudaStream_t>(stream);
}

void* legacy_default_stream() { return cudaStreamLegacy; }

void synchronize(int device) {
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(current_stream(device))));
  raise_recorded_error(device);
}

void* allocate(std::size_t bytes, int device, void* stream) {
  check_device(device);
  init_pool(device);
  LATTICE_CUDA_CHECK(cudaSetDevice(device));
  void* ptr = nullptr;
  const cudaError_t err = cudaMallocAsync(&ptr, bytes, static_cast<cudaStream_t>(stream));
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw DeviceError(lattice::detail::concat("[cuda] out of memory allocating ", bytes, " bytes on cuda:", device));
  }
  LATTICE_CUDA_CHECK(err);
  return ptr;
}

void deallocate(void* ptr, int device, void* stream) noexcept {
  // Destructors must not throw; a failure here (e.g. at process exit, after
  // the runtime shut down) is left to the next checked call.
  cudaSetDevice(device);
  if (cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream)) != cudaSuccess) cudaGetLastError();
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  const Device dev = dst_device.is_cuda() ? dst_device : src_device;
  auto stream = static_cast<cudaStream_t>(current_stream(dev.index));
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  if (dst_device.is_cpu() || src_device.is_cpu()) {
    // Host memory is pageable and may be freed right after: finish the copy.
    LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (dst_device.is_cpu()) raise_recorded_error(dev.index);
  }
}

// ---- sticky errors -----------------------------------------------------------

namespace {
std::mutex g_ops_mutex;
std::vector<std::string>& op_names() {
  static std::vector<std::string> names{"?"};
  return names;
}
}  // namespace

int op_id(const char* op) {
  std::lock_guard lock(g_ops_mutex);
  auto& names = op_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == op) return static_cast<int>(i);
  names.emplace_back(op);
  return static_cast<int>(names.size() - 1);
}

ErrorSlot* error_slot(int device) {
  static std::array<ErrorSlot*, k_max_devices> slots{};
  static std::once_flag flags[k_max_devices];
  std::call_once(flags[device], [device] {
    LATTICE_CUDA_CHECK(cudaSetDevice(device));
    void* slot = nullptr;
    LATTICE_CUDA_CHECK(cudaMalloc(&slot, sizeof(ErrorSlot)));  // once per device, for the process lifetime
    slots[static_cast<std::size_t>(device)] = static_cast<ErrorSlot*>(slot);
    LATTICE_CUDA_CHECK(cudaMemset(slots[static_cast<std::size_t>(device)], 0, sizeof(ErrorSlot)));
  });
  return slots[static_cast<std::size_t>(device)];
}

void raise_recorded_error(int device) {
  ErrorSlot host{};
  ErrorSlot* slot = error_slot(device);
  LATTICE_CUDA_CHECK(cudaMemcpy(&host, slot, sizeof(ErrorSlot), cudaMemcpyDeviceToHost));
  if (host.code == 0) return;
  LATTICE_CUDA_CHECK(cudaMemset(slot, 0, sizeof(ErrorSlot)));
  std::string op;
  {
    std::lock_guard lock(g_ops_mutex);
    const auto& names = op_names();
    op = host.op >= 0 && static_cast<std::size_t>(host.op) < names.size() ? names[static_cast<std::size_t>(host.op)]
                                                                          : "?";
  }
  const long long* v = host.values;
  switch (static_cast<ErrorCode>(host.code)) {
    case ErrorCode::key_overflow:
      throw ValueError(lattice::detail::concat(
          "[", op, "] argument 'x': input row ", v[0], " generates output coordinate (", v[1], ", ", v[2], ", ", v[3],
          ") outside the key range [-131072, 131071] (recorded on cuda:", device, ")"));
    case ErrorCode::non_finite_point:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'points': point ", v[0],
                                               " has a non-finite coordinate (recorded on cuda:", device, ")"));
    case ErrorCode::duplicate_coordinate:
      throw ValueError(lattice::detail::concat(
          "[", op, "] argument 'coords': rows ", v[0], " and ", v[1],
          " hold the same coordinate; coordinates must be unique (recorded on cuda:", device, ")"));
    case ErrorCode::voxel_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'points': point ", v[0], " falls in voxel cell ",
                                               v[2], " on axis ", "xyz"[v[1] % 3],
                                               ", outside the key range [-131072, 131071]; use a larger voxel_size or "
                                               "move the origin (recorded on cuda:",
                                               device, ")"));
    case ErrorCode::batch_out_of_range:
      throw ValueError(lattice::detail::concat(
          "[", op, "] argument '", op == "SparseTensor" ? "coords" : "batch_indices", "': entry ", v[0],
          " has batch index ", v[1], ", outside [0, 1022] (recorded on cuda:", device, ")"));
    case ErrorCode::not_divisible:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'coords': row ", v[0], " coordinate ", v[2],
                                               " on axis ", "xyz"[v[1] % 3], " is not divisible by the stride ", v[3],
                                               " (recorded on cuda:", device, ")"));
    case ErrorCode::coordinate_overflow:
      throw ValueError(lattice::detail::concat(
          "[", op, "] argument 'coords': row ", v[0], " coordinate ", v[2], " on axis ", "xyz"[v[1] % 3], " at stride ",
          v[3], " overflows the hash key range [-131072, 131071] (recorded on cuda:", device, ")"));
    case ErrorCode::empty_batch_max:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'x': batch item ", v[0],
                                               " has no rows; max over an empty batch item is undefined "
                                               "(recorded on cuda:",
                                               device, ")"));
    case ErrorCode::batch_beyond_size:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'batch_size': row ", v[0], " has batch index ",
                                               v[1], ", not below batch_size ", v[2], " (recorded on cuda:", device,
                                               ")"));
    case ErrorCode::row_index_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'rows': entry ", v[0], " is ", v[1],
                                               ", outside [0, ", v[2], ") (recorded on cuda:", device, ")"));
    case ErrorCode::duplicate_row_index:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'rows': entries ", v[0], " and ", v[1],
                                               " both select row ", v[2],
                                               "; rows must be unique (recorded on cuda:", device, ")"));
    case ErrorCode::nan_score:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'x': row ", v[0],
                                               " has a NaN score (first feature channel) (recorded on cuda:", device,
                                               ")"));
    case ErrorCode::mask_length:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'mask': has ", v[0], " entries but x has ", v[1],
                                               " active rows (recorded on cuda:", device, ")"));
    case ErrorCode::negative_count:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'counts': entry ", v[0], " is ", v[1],
                                               ", must be >= 0 (recorded on cuda:", device, ")"));
    case ErrorCode::batch_beyond_counts:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'counts': has ", v[2], " entries but row ", v[0],
                                               " has batch index ", v[1], " (recorded on cuda:", device, ")"));
    case ErrorCode::row_or_absent_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'rows': entry ", v[0], " is ", v[1],
                                               ", outside [-1, ", v[2], ") (recorded on cuda:", device, ")"));
    case ErrorCode::morton_batch_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'coords': row ", v[0], " has batch index ", v[1],
                                               ", outside the Morton range [0, 1023] (recorded on cuda:", device, ")"));
    case ErrorCode::voxel_map_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'point_voxel_map': entry ", v[0], " is ", v[1],
                                               ", outside [-1, ", v[2], ") (recorded on cuda:", device, ")"));
    case ErrorCode::neighbor_index_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'relation': index ", v[2], " at (", v[0], ", ",
                                               v[1], ") is outside [-1, ", v[3], ") (recorded on cuda:", device, ")"));
    case ErrorCode::label_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'labels': row ", v[0], " has label ", v[1],
                                               ", outside [0, ", v[2],
                                               ") and not the ignore_index (recorded on cuda:", device, ")"));
    case ErrorCode::prediction_out_of_range:
      throw ValueError(lattice::detail::concat("[", op, "] argument 'pred': row ", v[0], " predicts class ", v[1],
                                               ", outside [0, ", v[2], ") (recorded on cuda:", device, ")"));
    case ErrorCode::none:
      break;
  }
  throw Error(lattice::detail::concat("[", op, "] unknown device error code ", host.code));
}

// ---- events ------------------------------------------------------------------

Event::Event(int device) : device_(device), event_(nullptr) {
  check_device(device);
  LATTICE_CUDA_CHECK(cudaSetDevice(device));
  cudaEvent_t e = nullptr;
  LATTICE_CUDA_CHECK(cudaEventCreate(&e));
  event_ = e;
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void Event::record() {
  LATTICE_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(event_), static_cast<cudaStream_t>(current_stream(device_))));
}

float Event::elapsed_ms(const Event& start, const Event& stop) {
  LATTICE_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop.event_)));
  float ms = 0;
  LATTICE_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_), static_cast<cudaEvent_t>(stop.event_)));
  return ms;
}

}  // namespace lattice::cuda
