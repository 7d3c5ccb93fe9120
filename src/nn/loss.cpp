// cross_entropy, its gradient and segmentation metrics: argument checks, the
// host-side label check for CPU labels, and dispatch to the CPU or CUDA
// kernels (backend/*/api_train.hpp). See lattice/nn/loss.hpp for the rules.
#include "lattice/nn/loss.hpp"

#include <cmath>
#include <limits>

#include "backend/cpu/api_train.hpp"
#include "backend/cuda/api_train.hpp"

namespace lattice::nn {

namespace {

// Largest class count for confusion matrices ((C, C) int64 counts).
constexpr std::int64_t k_max_classes = std::int64_t{1} << 16;

void check_params(const CrossEntropyParams& p, const char* op) {
  check(p.reduction == Reduction::mean || p.reduction == Reduction::sum, op, "reduction", "unknown value ",
        static_cast<int>(p.reduction));
  check(std::isfinite(p.label_smoothing) && p.label_smoothing >= 0.0 && p.label_smoothing <= 1.0, op, "label_smoothing",
        "must be in [0, 1] (got ", p.label_smoothing, ")");
}

void check_logits(const Array& logits, const char* op, const char* name) {
  check(logits.defined(), op, name, "is an undefined array");
  check<TypeError>(is_floating(logits.dtype()), op, name, "must be a float array (got ", dtype_name(logits.dtype()),
                   ")");
  check(logits.ndim() == 2, op, name, "must be 2-D (rows, classes) (got shape ", logits.shape().str(), ")");
  check(logits.dim(1) >= 1, op, name, "needs at least one class (got shape ", logits.shape().str(), ")");
}

void check_labels_shape(const Array& labels, std::int64_t rows, Device device, const char* op) {
  check(labels.defined(), op, "labels", "is an undefined array");
  check<TypeError>(labels.dtype() == DType::i32, op, "labels", "must be int32 (got ", dtype_name(labels.dtype()), ")");
  check(labels.ndim() == 1 && labels.dim(0) == rows, op, "labels", "must have shape (", rows, ",) (got ",
        labels.shape().str(), ")");
  check<DeviceError>(labels.device() == device, op, "labels", "is on ", labels.device().str(), " but the input is on ",
                     device.str());
}

// Host labels: every label among the first `rows` is ignore_index or in [0, classes).
void check_label_values(const Array& labels, std::int64_t rows, std::int64_t classes, std::int64_t ignore,
                        const char* op) {
  if (!labels.device().is_cpu()) return;  // checked by the CUDA kernels (sticky error)
  const std::int32_t* y = labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t v = y[i];
    check(v == ignore || (v >= 0 && v < classes), op, "labels", "entry ", i, " is ", v, ", outside [0, ", classes,
          ") and not ignore_index ", ignore);
  }
}

// Rows whose labels matter: the active count for CPU tensors, else every row.
std::int64_t host_rows(const Array& logits, const Array& count) {
  if (!count.defined() || !count.device().is_cpu()) return logits.dim(0);
  const std::int64_t n = count.data<std::int32_t>()[0];
  return n < 0 ? 0 : std::min(n, logits.dim(0));
}

Array forward(const Array& logits, const Array& count, const Array& labels, const CrossEntropyParams& params,
              const char* op, const char* name) {
  check_params(params, op);
  check_logits(logits, op, name);
  check_labels_shape(labels, logits.dim(0), logits.device(), op);
  check_label_values(labels, host_rows(logits, count), logits.dim(1), params.ignore_index, op);
  if (logits.device().is_cuda()) return cuda::cross_entropy(logits, count, labels, params, op);
  return cpu::cross_entropy(logits, count, labels, params);
}

Array backward(const Array& logits, const Array& count, const Array& labels, const CrossEntropyParams& params,
               const Array& grad_loss, const char* op, const char* name) {
  check_params(params, op);
  check_logits(logits, op, name);
  check_labels_shape(labels, logits.dim(0), logits.device(), op);
  if (grad_loss.defined()) {
    check<TypeError>(is_floating(grad_loss.dtype()), op, "grad_loss", "must be a float array (got ",
                     dtype_name(grad_loss.dtype()), ")");
    check(grad_loss.numel() == 1, op, "grad_loss", "must hold one element (got shape ", grad_loss.shape().str(), ")");
    check<DeviceError>(grad_loss.device() == logits.device(), op, "grad_loss", "is on ", grad_loss.device().str(),
                       " but the input is on ", logits.device().str());
  }
  check_label_values(labels, host_rows(logits, count), logits.dim(1), params.ignore_index, op);
  if (logits.device().is_cuda()) return cuda::cross_entropy_backward(logits, count, labels, params, grad_loss, op);
  return cpu::cross_entropy_backward(logits, count, labels, params, grad_loss);
}

// The (C, C) int64 confusion matrix read to the host as doubles.
std::vector<double> host_confusion(const Array& confusion, const char* op, std::int64_t& c) {
  check(confusion.defined(), op, "confusion", "is an undefined array");
  check<TypeError>(confusion.dtype() == DType::i64, op, "confusion", "must be int64 (got ",
                   dtype_name(confusion.dtype()), ")");
  check(confusion.ndim() == 2 && confusion.dim(0) == confusion.dim(1), op, "confusion",
        "must be square (C, C) (got shape ", confusion.shape().str(), ")");
  c = confusion.dim(0);
  const std::vector<std::int64_t> v = confusion.to_vector<std::int64_t>();
  return {v.begin(), v.end()};
}

}  // namespace

Array cross_entropy(const Array& logits, const Array& labels, const CrossEntropyParams& params) {
  return forward(logits, Array(), labels, params, "cross_entropy", "logits");
}

Array cross_entropy(const SparseTensor& logits, const Array& labels, const CrossEntropyParams& params) {
  return forward(logits.feats(), logits.active_rows(), labels, params, "cross_entropy", "logits");
}

Array cross_entropy_backward(const Array& logits, const Array& labels, const CrossEntropyParams& params,
                             const Array& grad_loss) {
  return backward(logits, Array(), labels, params, grad_loss, "cross_entropy_backward", "logits");
}

SparseTensor cross_entropy_backward(const SparseTensor& logits, const Array& labels, const CrossEntropyParams& params,
                                    const Array& grad_loss) {
  return logits.replace_feats(
      backward(logits.feats(), logits.active_rows(), labels, params, grad_loss, "cross_entropy_backward", "logits"));
}

Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes, std::int64_t ignore_index) {
  const char* op = "confusion_matrix";
  check(num_classes >= 1 && num_classes <= k_max_classes, op, "num_classes", "must be in [1, ", k_max_classes,
        "] (got ", num_classes, ")");
  check(pred.defined(), op, "pred", "is an undefined array");
  const bool ids = pred.dtype() == DType::i32 || pred.dtype() == DType::i64;
  check<TypeError>(ids || is_floating(pred.dtype()), op, "pred", "must be int32/int64 class ids or float scores (got ",
                   dtype_name(pred.dtype()), ")");
  if (ids) {
    check(pred.ndim() == 1, op, "pred", "class ids must be 1-D (N,) (got shape ", pred.shape().str(), ")");
  } else {
    check(pred.ndim() == 2 && pred.dim(1) == num_classes, op, "pred", "scores must have shape (N, ", num_classes,
          ") (got ", pred.shape().str(), ")");
  }
  check_labels_shape(labels, pred.dim(0), pred.device(), op);
  if (pred.device().is_cuda()) return cuda::confusion_matrix(pred, labels, num_classes, ignore_index, op);
  const std::int32_t* y = labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < labels.dim(0); ++i) {
    const std::int64_t v = y[i];
    check(v == ignore_index || (v >= 0 && v < num_classes), op, "labels", "entry ", i, " is ", v, ", outside [0, ",
          num_classes, ") and not ignore_index ", ignore_index);
    if (!ids || v == ignore_index) continue;
    const std::int64_t p = pred.dtype() == DType::i32 ? pred.data<std::int32_t>()[i] : pred.data<std::int64_t>()[i];
    check(p >= 0 && p < num_classes, op, "pred", "entry ", i, " is ", p, ", outside [0, ", num_classes, ")");
  }
  return cpu::confusion_matrix(pred, labels, num_classes, ignore_index);
}

double accuracy(const Array& confusion) {
  std::int64_t c = 0;
  const std::vector<double> m = host_confusion(confusion, "accuracy", c);
  double hit = 0.0, total = 0.0;
  for (std::int64_t i = 0; i < c; ++i) {
    for (std::int64_t j = 0; j < c; ++j) total += m[static_cast<std::size_t>(i * c + j)];
    hit += m[static_cast<std::size_t>(i * c + i)];
  }
  return total > 0.0 ? hit / total : 0.0;
}

std::vector<double> iou_per_class(const Array& confusion) {
  std::int64_t c = 0;
  const std::vector<double> m = host_confusion(confusion, "iou_per_class", c);
  std::vector<double> out(static_cast<std::size_t>(c));
  for (std::int64_t k = 0; k < c; ++k) {
    double row = 0.0, col = 0.0;
    for (std::int64_t j = 0; j < c; ++j) {
      row += m[static_cast<std::size_t>(k * c + j)];
      col += m[static_cast<std::size_t>(j * c + k)];
    }
    const double tp = m[static_cast<std::size_t>(k * c + k)];
    const double uni = row + col - tp;
    out[static_cast<std::size_t>(k)] = uni > 0.0 ? tp / uni : std::numeric_limits<double>::quiet_NaN();
  }
  return out;
}

double miou(const Array& confusion) {
  double sum = 0.0;
  int n = 0;
  for (double v : iou_per_class(confusion)) {
    if (std::isnan(v)) continue;
    sum += v;
    ++n;
  }
  return n > 0 ? sum / n : 0.0;
}

}  // namespace lattice::nn
