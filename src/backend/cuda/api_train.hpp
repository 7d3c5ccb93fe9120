// CUDA backend of the training kernels (src/nn/optim.cpp, src/nn/loss.cpp).
// Plain C++ (no CUDA headers); backend/no_cuda/train_stubs.cpp throws
// NotCompiledError for every function when the toolkit is absent.
//
// Everything is enqueued on the device's current stream; nothing waits for
// the host. Same operation order as backend/cpu/train_cpu.cpp with explicitly
// rounded arithmetic, so updates agree with the CPU to the last place up to
// the libm differences of exp/log. Reductions are fixed-order (one block,
// fixed strides, tree in shared memory): bitwise identical run to run. No
// floating-point atomics (confusion counts use integer atomics, which commute).
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"

namespace lattice::cuda {

void sgd_update(const Array& value, const Array& grad, const Array& momentum, const lattice::detail::SgdUpdate& update);
void adamw_update(const Array& value, const Array& grad, const Array& exp_avg, const Array& exp_avg_sq,
                  const lattice::detail::AdamWUpdate& update);

// As cpu::cross_entropy; labels outside [0, C) other than ignore_index record
// a sticky error naming `op` (row, label, C) and count as ignored.
Array cross_entropy(const Array& logits, const Array& count, const Array& labels, const nn::CrossEntropyParams& params,
                    const char* op);
Array cross_entropy_backward(const Array& logits, const Array& count, const Array& labels,
                             const nn::CrossEntropyParams& params, const Array& grad_loss, const char* op);
// Out-of-range labels or predictions record a sticky error and skip the row.
Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes, std::int64_t ignore_index,
                       const char* op);

}  // namespace lattice::cuda
