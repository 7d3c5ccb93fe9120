// CUDA backend of the resample family (see backend/cpu/api_resample.hpp for the
// semantics, which are identical). Plain C++ header: no CUDA types. Every
// function enqueues on the device's current stream and never waits for the
// host; `rows` is the device-side int32 active-row count of the rows read.
// Without the toolkit, backend/no_cuda/resample_stubs.cpp throws NotCompiledError.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"

namespace lattice::cuda {

// ---- normalized convolutions (resample.cu) ---------------------------------------
void square_weight(const Array& w, Array& out);
void normalized_combine(const Array& num, const Array& den, const std::optional<Array>& bias, double eps,
                        const Array& rows, Array& out);

// ---- trilinear upsampling (resample.cu) ------------------------------------------
struct ChildrenSupport {
  Array coords;       // (coarse capacity * r^3, 4) int32, physical, at the fine stride
  Array active_rows;  // int32 scalar: coarse active rows * r^3
};
// Children of the active coarse rows; logical coordinates outside the key
// range are recorded as a sticky key_overflow error naming `op`.
ChildrenSupport upsample_children(const CoordinateSet& coarse, Int3 ratio, Int3 fine_stride, const char* op);
void trilinear_upsample(const CoordinateSet& coarse, const Array& feats, const CoordinateSet& fine, Int3 ratio,
                        Array& out, const char* op);

// ---- dropout and norms (norms.cu) --------------------------------------------------
void dropout(const Array& x, const Array& rows, double p, std::uint64_t seed, Array& out);
void layer_norm(const Array& x, const Array& rows, const std::optional<Array>& weight, const std::optional<Array>& bias,
                double eps, Array& out);
void rms_norm(const Array& x, const Array& rows, const std::optional<Array>& weight, double eps, Array& out);

}  // namespace lattice::cuda
