// CPU convolution VJPs (SPEC §13).
//
// Input gradient: the forward's gather-GEMM-scatter run backwards: per offset
// k (ascending), gather dy rows of k's edges, multiply by W[k]^T on the BLAS
// and add the rows into dx at the input rows (each input row appears at most
// once per offset, so the adds run in parallel without races).
// Weight gradient: per offset k, gather x[i]^T (C_in x edges) and dy[o]
// (edges x C_out) of k's edges in chunks and add their product into dW[k]
// with one BLAS GEMM per chunk (chunks in ascending order).
// 16-bit storage is widened to float32; float64 computes in float64.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/gemm.hpp"

namespace lattice::cpu {

namespace {

constexpr std::int64_t k_chunk_rows = 16384;

// Edge source: edge ids of one offset, or the identity over rows [0, n).
struct EdgeList {
  const std::int32_t* ids = nullptr;       // null: identity (edge r = (r, r))
  const std::int32_t* in_rows = nullptr;   // per edge id
  const std::int32_t* out_rows = nullptr;  // per edge id
  std::int64_t in_row(std::int64_t r) const { return ids ? in_rows[ids[r]] : r; }
  std::int64_t out_row(std::int64_t r) const { return ids ? out_rows[ids[r]] : r; }
};

// dw_k (C_in x C_out, acc) += sum over `count` edges of x[in]^T dy[out].
template <class T>
void weight_grad_edges(const T* x, const T* dy, std::int64_t cin, std::int64_t cout, const EdgeList& edges,
                       std::int64_t count, compute_t<T>* dw_k, std::vector<compute_t<T>>& gx,
                       std::vector<compute_t<T>>& gdy) {
  using A = compute_t<T>;
  for (std::int64_t c0 = 0; c0 < count; c0 += k_chunk_rows) {
    const std::int64_t rows = std::min(k_chunk_rows, count - c0);
    gx.resize(static_cast<std::size_t>(rows * cin));
    gdy.resize(static_cast<std::size_t>(rows * cout));
    A* a = gx.data();   // (C_in, rows): x transposed
    A* b = gdy.data();  // (rows, C_out)
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xi = x + edges.in_row(c0 + r) * cin;
      const T* dyo = dy + edges.out_row(c0 + r) * cout;
      for (std::int64_t ci = 0; ci < cin; ++ci) a[ci * rows + r] = load(xi[ci]);
      for (std::int64_t co = 0; co < cout; ++co) b[r * cout + co] = load(dyo[co]);
    }
    gemm(cin, cout, rows, a, rows, b, cout, A{1}, dw_k, cout);
  }
}

template <class T>
void weight_grad_typed(const Relation* rel, const Array& x, const Array& dy, std::int64_t identity_rows, Array& dw) {
  using A = compute_t<T>;
  const std::int64_t cin = x.dim(1), cout = dy.dim(1);
  A* out = dw.data<A>();
  std::fill(out, out + dw.numel(), A{0});
  if (cin == 0 || cout == 0) return;
  std::vector<A> gx, gdy;
  if (rel == nullptr) {
    weight_grad_edges<T>(x.data<T>(), dy.data<T>(), cin, cout, EdgeList{}, identity_rows, out, gx, gdy);
    return;
  }
  const KernelCsr& kcsr = rel->kernel_csr();
  const std::int32_t* koff = kcsr.offsets.data<std::int32_t>();
  const EdgeList base{nullptr, rel->in_rows().data<std::int32_t>(), rel->out_rows().data<std::int32_t>()};
  for (std::int64_t k = 0; k < rel->volume(); ++k) {
    const std::int64_t count = koff[k + 1] - koff[k];
    if (count == 0) continue;
    EdgeList edges = base;
    edges.ids = kcsr.edge_ids.data<std::int32_t>() + koff[k];
    weight_grad_edges<T>(x.data<T>(), dy.data<T>(), cin, cout, edges, count, out + k * cin * cout, gx, gdy);
  }
}

// dx[in] += dy[out] W[k]^T over `count` edges of one offset: gather the dy
// rows, one GEMM with W[k]^T, add the rows into acc. Within one offset every
// input row appears at most once ((i, k) fixes o), so the adds are race-free.
template <class T>
void input_grad_edges(const T* dy, const compute_t<T>* wt_k, std::int64_t cin, std::int64_t cout, const EdgeList& edges,
                      std::int64_t count, compute_t<T>* acc, std::vector<compute_t<T>>& gdy,
                      std::vector<compute_t<T>>& prod) {
  using A = compute_t<T>;
  for (std::int64_t c0 = 0; c0 < count; c0 += k_chunk_rows) {
    const std::int64_t rows = std::min(k_chunk_rows, count - c0);
    gdy.resize(static_cast<std::size_t>(rows * cout));
    prod.resize(static_cast<std::size_t>(rows * cin));
    A* b = gdy.data();
    A* p = prod.data();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* dyo = dy + edges.out_row(c0 + r) * cout;
      for (std::int64_t co = 0; co < cout; ++co) b[r * cout + co] = load(dyo[co]);
    }
    gemm(rows, cin, cout, b, cout, wt_k, cin, A{0}, p, cin);
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      A* xi = acc + edges.in_row(c0 + r) * cin;
      const A* pr = p + r * cin;
      for (std::int64_t ci = 0; ci < cin; ++ci) xi[ci] += pr[ci];
    }
  }
}

// dx over the relation's offsets in ascending order (or the identity over
// [0, identity_rows) when rel is null); rows without edges are zero.
template <class T>
void input_grad_typed(const Relation* rel, const Array& dy, std::int64_t identity_rows, const Array& weight_km,
                      Array& dx) {
  using A = compute_t<T>;
  const std::int64_t n_in = dx.dim(0), cin = dx.dim(1), cout = dy.dim(1);
  const std::int64_t volume = weight_km.dim(0);
  T* out = dx.data<T>();
  if (cin == 0) return;
  std::vector<A> acc(static_cast<std::size_t>(n_in * cin), A{0});
  if (cout > 0) {
    // W^T per offset: (K, C_out, C_in), widened once.
    std::vector<A> wt(static_cast<std::size_t>(volume * cout * cin));
    const T* w = weight_km.data<T>();
    for (std::int64_t k = 0; k < volume; ++k)
      for (std::int64_t ci = 0; ci < cin; ++ci)
        for (std::int64_t co = 0; co < cout; ++co)
          wt[static_cast<std::size_t>((k * cout + co) * cin + ci)] = load(w[(k * cin + ci) * cout + co]);
    std::vector<A> gdy, prod;
    if (rel == nullptr) {
      input_grad_edges<T>(dy.data<T>(), wt.data(), cin, cout, EdgeList{}, identity_rows, acc.data(), gdy, prod);
    } else {
      const KernelCsr& kcsr = rel->kernel_csr();
      const std::int32_t* koff = kcsr.offsets.data<std::int32_t>();
      const EdgeList base{nullptr, rel->in_rows().data<std::int32_t>(), rel->out_rows().data<std::int32_t>()};
      for (std::int64_t k = 0; k < volume; ++k) {
        const std::int64_t count = koff[k + 1] - koff[k];
        if (count == 0) continue;
        EdgeList edges = base;
        edges.ids = kcsr.edge_ids.data<std::int32_t>() + koff[k];
        input_grad_edges<T>(dy.data<T>(), wt.data() + k * cout * cin, cin, cout, edges, count, acc.data(), gdy, prod);
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n_in * cin; ++i) out[i] = store<T>(acc[static_cast<std::size_t>(i)]);
}

}  // namespace

void conv_input_grad(const Relation& rel, const Array& dy, const Array& weight_km, Array& dx) {
  visit_float(dy.dtype(), [&]<class T>() { input_grad_typed<T>(&rel, dy, 0, weight_km, dx); });
}

void conv_weight_grad(const Relation& rel, const Array& x, const Array& dy, Array& dw) {
  visit_float(x.dtype(), [&]<class T>() { weight_grad_typed<T>(&rel, x, dy, 0, dw); });
}

void pointwise_input_grad(const Array& dy, std::int64_t rows, const Array& weight_km, Array& dx) {
  visit_float(dy.dtype(), [&]<class T>() { input_grad_typed<T>(nullptr, dy, rows, weight_km, dx); });
}

void pointwise_weight_grad(const Array& x, const Array& dy, std::int64_t rows, Array& dw) {
  visit_float(x.dtype(), [&]<class T>() { weight_grad_typed<T>(nullptr, x, dy, rows, dw); });
}

void bias_grad(const Array& dy, std::int64_t rows, Array& db) {
  visit_float(dy.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = dy.dim(1);
    const T* g = dy.data<T>();
    std::vector<A> acc(static_cast<std::size_t>(c), A{0});
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += load(g[r * c + j]);
    T* out = db.data<T>();
    for (std::int64_t j = 0; j < c; ++j) out[j] = store<T>(acc[static_cast<std::size_t>(j)]);
  });
}

void normalized_grad_terms(const Array& dy, const Array& num, const Array& den, double eps, std::int64_t rows, Array& g,
                           Array& dden) {
  visit_float(dy.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t cap = dy.dim(0), c = dy.dim(1);
    const T* gy = dy.data<T>();
    const T* n = num.data<T>();
    const A* d = den.data<A>();
    T* go = g.data<T>();
    A* dd = dden.data<A>();
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < cap * c; ++i) {
      if (i / std::max<std::int64_t>(c, 1) >= rows) {
        go[i] = store<T>(A{0});
        dd[i] = A{0};
        continue;
      }
      const A inv = A{1} / std::sqrt(d[i] + static_cast<A>(eps));
      const A gv = load(gy[i]);
      go[i] = store<T>(gv * inv);
      dd[i] = A{-0.5} * gv * load(n[i]) * inv * inv * inv;
    }
  });
}

void normalized_weight_combine(const Array& dw_num, const Array& dw_den, const Array& weight_km, Array& out) {
  visit_float(weight_km.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t volume = weight_km.dim(0), cin = weight_km.dim(1), cout = weight_km.dim(2);
    const A* a = dw_num.data<A>();
    const A* b = dw_den.data<A>();
    const T* w = weight_km.data<T>();
    A* o = out.data<A>();
    for (std::int64_t k = 0; k < volume; ++k)
      for (std::int64_t ci = 0; ci < cin; ++ci)
        for (std::int64_t co = 0; co < cout; ++co) {
          const std::int64_t i = (k * cin + ci) * cout + co;
          o[i] = a[i] + A{2} * load(w[i]) * b[k * cout + co];
        }
  });
}

Array from_kernel_major(const Array& km, const Shape& shape) {
  if (shape.ndim() == 3) return km;
  return visit_float(km.dtype(), [&]<class T>() {
    const std::int64_t volume = km.dim(0), cin = km.dim(1), cout = km.dim(2);
    Array out = Array::empty(shape, km.dtype(), Device::cpu());
    const T* src = km.data<T>();
    T* dst = out.data<T>();
    // (K, C_in, C_out) -> (C_out, K..., C_in); pointwise is the K = 1 case.
    for (std::int64_t co = 0; co < cout; ++co)
      for (std::int64_t k = 0; k < volume; ++k)
        for (std::int64_t ci = 0; ci < cin; ++ci) dst[(co * volume + k) * cin + ci] = src[(k * cin + ci) * cout + co];
    return out;
  });
}

}  // namespace lattice::cpu
