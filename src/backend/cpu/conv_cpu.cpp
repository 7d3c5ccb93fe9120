// CPU convolution routes.
//
// gather_gemm_scatter: for each kernel offset k, gather the input rows of k's
// edges into a dense block, multiply by W[k] on the BLAS, and add the product
// rows into the accumulator at their output rows. Within one offset every
// output row appears at most once, so the scatter is race-free in parallel.
// The submanifold centre offset maps every row to itself: it is one GEMM over
// the whole feature matrix, no gather and no scatter ("identity reuse").
//
// fetch_on_demand: for each output row, walk its edges (output CSR) and
// accumulate X[i] * W[k] directly; no BLAS, good for tiny channel counts.
//
// 16-bit storage is widened to float32 for the GEMM and the accumulator;
// float64 computes in float64 (the reference dtype).
#include <algorithm>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/gemm.hpp"

namespace lattice::cpu {

namespace {

// Rows gathered per GEMM call: bounds the scratch memory at large sizes.
constexpr std::int64_t k_chunk_rows = 16384;

template <class A, class T>
std::vector<A> widen(const T* src, std::int64_t n) {
  std::vector<A> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<A>(load(src[i]));
  return out;
}

// acc rows [0, n) := bias (or 0).
template <class A, class T>
void init_rows(A* acc, std::int64_t n, std::int64_t cout, const std::optional<Array>& bias) {
  if (!bias) {
    std::fill(acc, acc + n * cout, A{0});
    return;
  }
  const std::vector<A> b = widen<A>(bias->data<T>(), cout);
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < n; ++r) std::copy(b.begin(), b.end(), acc + r * cout);
}

// Epilogue on the accumulated rows [0, n): scale/shift, residual, ReLU.
template <class A, class T>
void apply_epilogue(A* acc, std::int64_t n, std::int64_t cout, const Epilogue& e) {
  if (e.scale == nullptr && e.shift == nullptr && e.residual == nullptr && !e.relu) return;
  const float* scale = e.scale ? e.scale->data<float>() : nullptr;
  const float* shift = e.shift ? e.shift->data<float>() : nullptr;
  const T* residual = e.residual ? e.residual->data<T>() : nullptr;
  // Branches hoisted out of the channel loops, so each loop vectorizes.
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < n; ++r) {
    A* row = acc + r * cout;
    if (scale)
      for (std::int64_t c = 0; c < cout; ++c) row[c] *= static_cast<A>(scale[c]);
    if (shift)
      for (std::int64_t c = 0; c < cout; ++c) row[c] += static_cast<A>(shift[c]);
    if (residual) {
      const T* res = residual + r * cout;
      for (std::int64_t c = 0; c < cout; ++c) row[c] += static_cast<A>(load(res[c]));
    }
    if (e.relu)
      for (std::int64_t c = 0; c < cout; ++c) row[c] = row[c] > A{0} ? row[c] : A{0};
  }
}

template <class T>
void conv_relation_typed(const Relation& rel, const Array& feats, const Array& weight, const std::optional<Array>& bias,
                         Array& out, ops::ConvRoute route, const Epilogue& epilogue) {
  using A = compute_t<T>;
  constexpr bool direct = std::is_same_v<A, T>;  // the accumulator is the output itself
  const std::int64_t n_out = rel.output()->rows();
  const std::int64_t cin = feats.dim(1);
  const std::int64_t cout = out.dim(1);
  const std::int64_t volume = rel.volume();
  const T* x = feats.data<T>();
  T* y = out.data<T>();

  std::vector<A> acc_storage;
  A* acc = nullptr;
  if constexpr (direct) {
    acc = y;
  } else {
    acc_storage.resize(static_cast<std::size_t>(n_out * cout));
    acc = acc_storage.data();
  }
  init_rows<A, T>(acc, n_out, cout, bias);

  std::vector<A> w_storage;
  const A* w = nullptr;
  if constexpr (direct) {
    w = weight.data<T>();
  } else {
    w_storage = widen<A>(weight.data<T>(), volume * cin * cout);
    w = w_storage.data();
  }

  if (route == ops::ConvRoute::fetch_on_demand) {
    const std::int32_t* offsets = rel.output_csr().row_offsets.data<std::int32_t>();
    const std::int32_t* in_rows = rel.in_rows().data<std::int32_t>();
    const std::int32_t* kernel_ids = rel.kernel_ids().data<std::int32_t>();
#pragma omp parallel for schedule(dynamic, 256)
    for (std::int64_t o = 0; o < n_out; ++o) {
      A* yo = acc + o * cout;
      for (std::int32_t e = offsets[o]; e < offsets[o + 1]; ++e) {
        const T* xi = x + std::int64_t{in_rows[e]} * cin;
        const A* wk = w + std::int64_t{kernel_ids[e]} * cin * cout;
        for (std::int64_t ci = 0; ci < cin; ++ci) {
          const A xv = load(xi[ci]);
          const A* wrow = wk + ci * cout;
          for (std::int64_t co = 0; co < cout; ++co) yo[co] += xv * wrow[co];
        }
      }
    }
  } else {
    const KernelCsr& kcsr = rel.kernel_csr();
    const std::int32_t* koff = kcsr.offsets.data<std::int32_t>();
    const std::int32_t* eids = kcsr.edge_ids.data<std::int32_t>();
    const std::int32_t* in_rows = rel.in_rows().data<std::int32_t>();
    const std::int32_t* out_rows = rel.out_rows().data<std::int32_t>();
    const std::int64_t center = rel.kind() == RelationKind::submanifold ? rel.spec().center_index() : -1;
    std::vector<A> gathered;
    std::vector<A> product;

    for (std::int64_t k = 0; k < volume; ++k) {
      const std::int64_t begin = koff[k];
      const std::int64_t count = koff[k + 1] - begin;
      if (count == 0) continue;
      const A* wk = w + k * cin * cout;
      if (k == center) {
        // Identity offset: every output row o reads input row o.
        const A* xa = nullptr;
        if constexpr (direct) {
          xa = x;
        } else {
          gathered.resize(static_cast<std::size_t>(n_out * cin));
#pragma omp parallel for schedule(static)
          for (std::int64_t i = 0; i < n_out * cin; ++i) gathered[static_cast<std::size_t>(i)] = load(x[i]);
          xa = gathered.data();
        }
        gemm(n_out, cout, cin, xa, cin, wk, cout, A{1}, acc, cout);
        continue;
      }
      for (std::int64_t c0 = 0; c0 < count; c0 += k_chunk_rows) {
        const std::int64_t rows = std::min(k_chunk_rows, count - c0);
        const std::int32_t* ids = eids + begin + c0;
        gathered.resize(static_cast<std::size_t>(rows * cin));
        product.resize(static_cast<std::size_t>(rows * cout));
        A* g = gathered.data();
        A* p = product.data();
#pragma omp parallel for schedule(static)
        for (std::int64_t r = 0; r < rows; ++r) {
          const T* xi = x + std::int64_t{in_rows[ids[r]]} * cin;
          A* gr = g + r * cin;
          for (std::int64_t ci = 0; ci < cin; ++ci) gr[ci] = load(xi[ci]);
        }
        gemm(rows, cout, cin, g, cin, wk, cout, A{0}, p, cout);
#pragma omp parallel for schedule(static)
        for (std::int64_t r = 0; r < rows; ++r) {
          A* yo = acc + std::int64_t{out_rows[ids[r]]} * cout;
          const A* pr = p + r * cout;
          for (std::int64_t co = 0; co < cout; ++co) yo[co] += pr[co];
        }
      }
    }
  }

  apply_epilogue<A, T>(acc, n_out, cout, epilogue);
  if constexpr (!direct) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n_out * cout; ++i) y[i] = store<T>(acc[i]);
  }
  // Capacity rows past the active count hold zeros, never stale memory.
  std::fill(y + n_out * cout, y + out.dim(0) * cout, store<T>(0.0f));
}

}  // namespace

void conv_relation(const Relation& rel, const Array& feats, const Array& weight, const std::optional<Array>& bias,
                   Array& out, ops::ConvRoute route, const Epilogue& epilogue) {
  visit_float(feats.dtype(),
              [&]<class T>() { conv_relation_typed<T>(rel, feats, weight, bias, out, route, epilogue); });
}

void conv_pointwise(const Array& feats, std::int64_t rows, const Array& weight, const std::optional<Array>& bias,
                    Array& out, const Epilogue& epilogue) {
  visit_float(feats.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t cin = feats.dim(1);
    const std::int64_t cout = out.dim(1);
    T* y = out.data<T>();
    std::vector<A> acc_storage;
    A* acc = nullptr;
    const A* xa = nullptr;
    const A* w = nullptr;
    std::vector<A> x_storage, w_storage;
    if constexpr (std::is_same_v<A, T>) {
      acc = y;
      xa = feats.data<T>();
      w = weight.data<T>();
    } else {
      acc_storage.resize(static_cast<std::size_t>(rows * cout));
      acc = acc_storage.data();
      x_storage = widen<A>(feats.data<T>(), rows * cin);
      xa = x_storage.data();
      w_storage = widen<A>(weight.data<T>(), cin * cout);
      w = w_storage.data();
    }
    init_rows<A, T>(acc, rows, cout, bias);
    gemm(rows, cout, cin, xa, cin, w, cout, A{1}, acc, cout);
    apply_epilogue<A, T>(acc, rows, cout, epilogue);
    if constexpr (!std::is_same_v<A, T>) {
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < rows * cout; ++i) y[i] = store<T>(acc[i]);
    }
    std::fill(y + rows * cout, y + out.dim(0) * cout, store<T>(0.0f));
  });
}

Array to_kernel_major(const Array& weight) {
  if (weight.ndim() == 3) return weight;
  return visit_float(weight.dtype(), [&]<class T>() {
    const T* src = weight.data<T>();
    if (weight.ndim() == 2) {  // (C_out, C_in) -> (1, C_in, C_out)
      const std::int64_t cout = weight.dim(0), cin = weight.dim(1);
      Array out = Array::empty(Shape{1, cin, cout}, weight.dtype(), Device::cpu());
      T* dst = out.data<T>();
      for (std::int64_t co = 0; co < cout; ++co)
        for (std::int64_t ci = 0; ci < cin; ++ci) dst[ci * cout + co] = src[co * cin + ci];
      return out;
    }
    // (C_out, Kx, Ky, Kz, C_in) -> (K, C_in, C_out); k = (ix * Ky + iy) * Kz + iz is the flat spatial index.
    const std::int64_t cout = weight.dim(0), cin = weight.dim(4);
    const std::int64_t volume = weight.dim(1) * weight.dim(2) * weight.dim(3);
    Array out = Array::empty(Shape{volume, cin, cout}, weight.dtype(), Device::cpu());
    T* dst = out.data<T>();
    for (std::int64_t co = 0; co < cout; ++co)
      for (std::int64_t k = 0; k < volume; ++k)
        for (std::int64_t ci = 0; ci < cin; ++ci) dst[(k * cin + ci) * cout + co] = src[(co * volume + k) * cin + ci];
    return out;
  });
}

}  // namespace lattice::cpu
