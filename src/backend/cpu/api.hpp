// The CPU backend: kernels for every op, and the reference that every GPU
// route is tested against. Front ends (src/ops, src/relation) validate their
// arguments before calling in here; these functions rely on that.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cpu {

// ---- arrays -------------------------------------------------------------
void fill(Array& out, double value);
void astype(const Array& src, Array& dst);

// ---- relations (relation_cpu.cpp) ------------------------------------------
// Rows per batch item of the first `rows` coordinate rows: (max batch + 1,) int32.
Array batch_counts(const Array& coords, std::int64_t rows);
// Output support of the forward kind: unique(floor(v / r)) in first-seen order.
// Returns physical coordinates (rows, 4) at `out_stride`.
Array forward_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, const char* op);
// Output support of the transposed (padding applied) or generative (no
// padding) kinds: unique(v * r + off_k - p), rows outer, offsets inner.
Array transposed_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, bool apply_padding,
                         const char* op);

struct Edges {
  Array in_rows, out_rows, kernel_ids;  // (n_edges,) int32
  Array counts;                         // (2,) int32: edges, outputs
  std::int64_t n_edges = 0;
};
// Edges of `kind` from `input` to `output`, sorted by (out_row, k).
Edges build_edges(const CoordinateSet& input, const CoordinateSet& output, RelationKind kind, const KernelSpec& spec,
                  const char* op);

// ---- views (views_cpu.cpp) ----------------------------------------------
OutputCsr build_output_csr(const Relation& rel);
InputCsr build_input_csr(const Relation& rel);
KernelCsr build_kernel_csr(const Relation& rel);
ImplicitGemmMap build_implicit_gemm_map(const Relation& rel);
InputGemmMap build_input_gemm_map(const Relation& rel);
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation& rel, int tile_rows);

// ---- convolution (conv_cpu.cpp) -------------------------------------------
// The fused epilogue (ops::ConvEpilogue) as host arrays: null when absent.
struct Epilogue {
  const Array* scale = nullptr;     // (C_out,) float32
  const Array* shift = nullptr;     // (C_out,) float32
  const Array* residual = nullptr;  // (rows, C_out) in the feature dtype
  bool relu = false;
};
// out[o] = bias + sum over edges (i, o, k) of feats[i] * weight[k], then the epilogue.
// weight: (K, C_in, C_out) kernel-major in the feature dtype; out: (out_capacity, C_out),
// written for every active output row (rows past it are zeroed).
void conv_relation(const Relation& rel, const Array& feats, const Array& weight, const std::optional<Array>& bias,
                   Array& out, const ops::ConvRoute route, const Epilogue& epilogue);
// out[r] = bias + feats[r] * weight[0] for r < rows (pointwise route), then the epilogue.
void conv_pointwise(const Array& feats, std::int64_t rows, const Array& weight, const std::optional<Array>& bias,
                    Array& out, const Epilogue& epilogue);
// Dense 5-D (C_out, Kx, Ky, Kz, C_in) or pointwise (C_out, C_in) -> (K, C_in, C_out).
Array to_kernel_major(const Array& weight);

// ---- pooling (pooling_cpu.cpp) ---------------------------------------------
// out[o] = reduce over the relation's edges into o of feats[i] (rows past the count zeroed).
void pool(const Relation& rel, const Array& feats, ops::PoolMode mode, Array& out);
// out (B, C) = reduce of the first `rows` rows grouped by batch column; max over
// an empty item throws ValueError naming `op`.
void global_pool(const Array& coords, std::int64_t rows, const Array& feats, ops::PoolMode mode, Array& out,
                 const char* op);

// ---- point -> voxel (voxelize_cpu.cpp) --------------------------------------
struct VoxelizeResult {
  Array coords;        // (M, 4) int32 physical
  Array feats;         // (M, C)
  Array inverse_rows;  // (N,) int32
  Array counts;        // (M,) int32
  Array batch_counts;  // (B,) int32
};
VoxelizeResult voxelize(const Array& points, const std::optional<Array>& feats,
                        const std::optional<Array>& batch_indices, const ops::VoxelizeParams& params);

// ---- feature ops (features_cpu.cpp) ---------------------------------------
// Normalises rows [0, rows); writes updated running statistics when training.
void batch_norm(const Array& x, std::int64_t rows, const ops::BatchNormArgs& args, Array& out, Array& running_mean,
                Array& running_var);
void activation(const Array& x, std::int64_t rows, const ops::ActivationParams& params, Array& out);
void add_rows(const Array& a, const Array& b, std::int64_t rows, Array& out);
void cat_channels(const Array& a, const Array& b, std::int64_t rows, Array& out);

// ---- info --------------------------------------------------------------
std::string blas_name();
int num_threads();
void set_num_threads(int n);

}  // namespace lattice::cpu

// Later op families (and their gradients), one header each.
#include "backend/cpu/api_conv_grad.hpp"
#include "backend/cpu/api_features_grad.hpp"
#include "backend/cpu/api_neighbors.hpp"
#include "backend/cpu/api_points.hpp"
#include "backend/cpu/api_pooling_grad.hpp"
#include "backend/cpu/api_resample.hpp"
#include "backend/cpu/api_rows.hpp"
#include "backend/cpu/api_sets.hpp"
#include "backend/cpu/api_train.hpp"
