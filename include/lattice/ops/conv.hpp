// Sparse convolution (SPEC §5).
//
//   Y[o, :] = bias + sum over relation edges (i, o, k) of X[i, :] * W[k]
//
// Weights: dense 5-D (C_out, Kx, Ky, Kz, C_in), kernel-major (K, C_in, C_out)
// or pointwise (C_out, C_in), in the feature dtype. Bias: (C_out,) in the
// feature dtype. float16/bfloat16 storage accumulates in float32.
#pragma once

#include <optional>
#include <string_view>
#include <variant>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/kernel_spec.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// How a convolution is evaluated. Results never depend on the route beyond
// float rounding. PROVISIONAL names (SPEC §11).
enum class ConvRoute : std::uint8_t {
  automatic,             // the route selector decides
  pointwise_matmul,      // 1x1x1 stride 1 without target: a feature matrix product
  gather_gemm_scatter,   // per offset: gather rows, GEMM, scatter-add
  implicit_gemm,         // fused gather-GEMM over the implicit-GEMM map (CUDA)
  sorted_implicit_gemm,  // same over the occupancy-sorted map (CUDA)
  fetch_on_demand,       // per output row over the output CSR
};
std::string_view route_name(ConvRoute route);

// Per-shape tuning of the CUDA tile configuration (off by default). When on,
// the first convolution of each new shape times the candidates once -- a
// host-facing step that waits for the device -- and caches the fastest; later
// calls reuse the choice without waiting. Off, a fixed table decides.
// Deterministic mode (lattice/core/determinism.hpp) overrides it: the table.
void set_conv_autotune(bool enabled);
bool conv_autotune();

// Explicit output support: a tensor (its coordinate set), a key of the same
// manager, or an (N, 4) int32 coordinate array (registered as a new set).
class TargetCoords {
 public:
  TargetCoords() = default;
  TargetCoords(SparseTensor tensor) : value_(std::move(tensor)) {}  // NOLINT(google-explicit-constructor)
  TargetCoords(CoordinateMapKey key) : value_(key) {}               // NOLINT(google-explicit-constructor)
  TargetCoords(Array coords) : value_(std::move(coords)) {}         // NOLINT(google-explicit-constructor)

  bool has_value() const { return !std::holds_alternative<std::monostate>(value_); }
  const std::variant<std::monostate, SparseTensor, CoordinateMapKey, Array>& value() const { return value_; }

 private:
  std::variant<std::monostate, SparseTensor, CoordinateMapKey, Array> value_;
};

// PROVISIONAL. Work fused into a convolution's single output write (saving
// full passes over the output), applied in this order:
//   y = conv(x) + bias;  y = y * scale + shift;  y = y + residual;  y = relu(y)
// scale, shift: (C_out,) float32 on the features' device (e.g. an inference
// batch norm folded with batch_norm_fold); residual: a tensor on the output's
// coordinates (same key), C_out channels, same dtype.
struct ConvEpilogue {
  std::optional<Array> scale;
  std::optional<Array> shift;
  std::optional<SparseTensor> residual;
  bool relu = false;
};

struct Conv3dParams {
  Int3 kernel_size{3};
  Int3 stride{1};
  Int3 padding{0};
  Int3 dilation{1};
  TargetCoords coordinates{};  // target support (stride must be x.stride * stride)
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;  // float32 on CUDA: allow TF32 tensor cores (off: full float32)
  ConvEpilogue epilogue{};
};

struct SubmConv3dParams {
  Int3 kernel_size{3};  // odd on every axis
  Int3 dilation{1};
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;  // float32 on CUDA: allow TF32 tensor cores (off: full float32)
  ConvEpilogue epilogue{};
};

struct ConvTranspose3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};  // must divide x.stride on every axis
  Int3 padding{0};
  Int3 dilation{1};
  TargetCoords coordinates{};  // target support (stride must be x.stride / stride)
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;  // float32 on CUDA: allow TF32 tensor cores (off: full float32)
  ConvEpilogue epilogue{};
};

struct GenerativeConvTranspose3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};
  TargetCoords coordinates{};
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;  // float32 on CUDA: allow TF32 tensor cores (off: full float32)
  ConvEpilogue epilogue{};
};

// Forward relation (or target relation when params.coordinates is set).
// Pointwise (1x1x1, stride 1, no target) is a feature matrix product and keeps
// the input identity.
SparseTensor conv3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias = std::nullopt,
                    const Conv3dParams& params = {});

// Submanifold: the output reuses the input identity.
SparseTensor subm_conv3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias = std::nullopt,
                         const SubmConv3dParams& params = {});

// Transposed relation (target transposed when params.coordinates is set).
SparseTensor conv_transpose3d(const SparseTensor& x, const Array& weight,
                              const std::optional<Array>& bias = std::nullopt,
                              const ConvTranspose3dParams& params = {});

// Generative relation: generates support u * r + off_k (deduplicated, first seen).
SparseTensor generative_conv_transpose3d(const SparseTensor& x, const Array& weight,
                                         const std::optional<Array>& bias = std::nullopt,
                                         const GenerativeConvTranspose3dParams& params = {});

}  // namespace lattice::ops

// ---- normalized convolutions (SPEC §5) ---------------------------------------
//
//   Y = conv(X, W) / sqrt(conv(1, W^2) + eps) + bias
//
// conv(1, W^2) is the same relation applied to an all-ones input with the
// squared weights: per output row o and channel co, the sum over the offsets k
// that reach o of sum_ci W[k, ci, co]^2. Unreached rows get bias only. The
// bias is added after the division. Same weight layouts, relations and output
// identity as the plain forms; the denominator is evaluated in float32
// (float64 for float64 features) whatever the feature dtype. No fused
// epilogue. Both products are plain convolutions (so they share the relation
// cache), followed by one elementwise combine.
namespace lattice::ops {

struct NormalizedSubmConv3dParams {
  Int3 kernel_size{3};  // odd on every axis
  Int3 dilation{1};
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;  // numerator only; the denominator never uses TF32
  double eps = 1e-8;        // finite, >= 0
};

struct NormalizedConvTranspose3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};
  Int3 padding{0};
  Int3 dilation{1};
  TargetCoords coordinates{};
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;
  double eps = 1e-8;
};

struct NormalizedGenerativeConvTranspose3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};
  TargetCoords coordinates{};
  ConvRoute route = ConvRoute::automatic;
  bool allow_tf32 = false;
  double eps = 1e-8;
};

SparseTensor normalized_subm_conv3d(const SparseTensor& x, const Array& weight,
                                    const std::optional<Array>& bias = std::nullopt,
                                    const NormalizedSubmConv3dParams& params = {});
SparseTensor normalized_conv_transpose3d(const SparseTensor& x, const Array& weight,
                                         const std::optional<Array>& bias = std::nullopt,
                                         const NormalizedConvTranspose3dParams& params = {});
SparseTensor normalized_generative_conv_transpose3d(const SparseTensor& x, const Array& weight,
                                                    const std::optional<Array>& bias = std::nullopt,
                                                    const NormalizedGenerativeConvTranspose3dParams& params = {});

}  // namespace lattice::ops
