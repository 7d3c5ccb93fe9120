// Classification loss and segmentation metrics (lattice::nn).
//
// cross_entropy: logits are a dense (N, C) Array or a SparseTensor (its
// active rows, C channels); labels are (N,) int32 on the same device (for a
// SparseTensor, N = feats capacity; rows past the active count are ignored).
// Per row i with label y != ignore_index, over log-softmax lp (computed stably
// in float32, float64 for float64 logits):
//   loss_i = -(1 - s) * lp[y] - (s / C) * sum_c lp[c]     (s = label_smoothing)
// reduction sum: sum_i loss_i; mean: that sum / (number of non-ignored rows),
// and 0 when every row is ignored or there are none (PyTorch gives NaN; a
// batch without labelled points should not poison a training run). The result
// is a scalar Array on the logits' device -- float32, or float64 for float64
// logits -- written by fixed-order reductions (deterministic, no atomics, no
// host wait on CUDA).
//
// Labels outside [0, C) that are not ignore_index are an error: checked on the
// host for CPU labels; on CUDA the kernels record a sticky device error
// (raised at the next host-facing call) and treat the row as ignored.
#pragma once

#include <cstdint>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::nn {

enum class Reduction { mean, sum };

struct CrossEntropyParams {
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;
  double label_smoothing = 0.0;  // in [0, 1]
};

Array cross_entropy(const Array& logits, const Array& labels, const CrossEntropyParams& params = {});
Array cross_entropy(const SparseTensor& logits, const Array& labels, const CrossEntropyParams& params = {});

// d loss / d logits, same shape, dtype and device as the logits (ignored rows
// and capacity rows get 0). grad_loss is the upstream gradient of the scalar
// loss: a one-element float Array on the logits' device (read there, no host
// wait), or undefined for 1.
Array cross_entropy_backward(const Array& logits, const Array& labels, const CrossEntropyParams& params = {},
                             const Array& grad_loss = Array());
SparseTensor cross_entropy_backward(const SparseTensor& logits, const Array& labels,
                                    const CrossEntropyParams& params = {}, const Array& grad_loss = Array());

// Confusion counts for segmentation metrics: (C, C) int64 on pred's device,
// entry [label][prediction]. pred is (N,) int32/int64 class ids, or (N, C)
// float logits/scores reduced by argmax (ties to the lower class; NaN never
// wins). Rows whose label is ignore_index are skipped; other labels and the
// predictions must lie in [0, num_classes) (host check on the CPU, sticky
// device error on CUDA, where the bad row is skipped).
Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes,
                       std::int64_t ignore_index = -100);

// Host-facing metrics of a (C, C) int64 confusion matrix (any device; read back).
// accuracy = trace / total (0 when empty).
double accuracy(const Array& confusion);
// IoU per class = tp / (tp + fp + fn); NaN for a class absent from both labels and predictions.
std::vector<double> iou_per_class(const Array& confusion);
// Mean of the defined (non-NaN) per-class IoUs; 0 when none is defined.
double miou(const Array& confusion);

}  // namespace lattice::nn
