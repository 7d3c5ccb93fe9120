#include "support/dense_reference.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

namespace lattice::testing {

namespace {

bool is_transposed(RefKind k) {
  return k == RefKind::transposed || k == RefKind::target_transposed || k == RefKind::generative;
}

int floor_divide(int a, int b) { return static_cast<int>(std::floor(static_cast<double>(a) / b)); }

I3 effective_padding(RefKind kind, const RefSpec& spec) {
  if (kind == RefKind::submanifold || kind == RefKind::generative) return {0, 0, 0};
  return spec.padding;
}

I3 effective_stride(RefKind kind, const RefSpec& spec) {
  if (kind == RefKind::submanifold) return {1, 1, 1};
  return spec.stride;
}

}  // namespace

std::vector<I3> ref_offsets(const RefSpec& spec) {
  std::vector<I3> out;
  auto axis = [&](int a, int i) {
    const int n = spec.size[a];
    return (n % 2 == 1 ? i - (n - 1) / 2 : i) * spec.dilation[a];
  };
  for (int ix = 0; ix < spec.size[0]; ++ix)
    for (int iy = 0; iy < spec.size[1]; ++iy)
      for (int iz = 0; iz < spec.size[2]; ++iz) out.push_back({axis(0, ix), axis(1, iy), axis(2, iz)});
  return out;
}

std::vector<Coord> ref_support(RefKind kind, const std::vector<Coord>& input, const I3& in_stride, const RefSpec& spec,
                               const std::vector<Coord>* target) {
  if (kind == RefKind::submanifold) return input;
  if (kind == RefKind::target || kind == RefKind::target_transposed) return *target;
  std::vector<Coord> out;
  std::set<Coord> seen;
  auto push = [&](const Coord& c) {
    if (seen.insert(c).second) out.push_back(c);
  };
  const I3 r = spec.stride;
  if (kind == RefKind::forward) {
    if (r == I3{1, 1, 1}) return input;
    for (const Coord& c : input) {
      Coord o{c[0], 0, 0, 0};
      for (int a = 0; a < 3; ++a) {
        const int s_out = in_stride[a] * r[a];
        o[a + 1] = floor_divide(c[a + 1] / in_stride[a], r[a]) * s_out;
      }
      push(o);
    }
    return out;
  }
  const I3 p = effective_padding(kind, spec);
  for (const Coord& c : input) {
    for (const I3& off : ref_offsets(spec)) {
      Coord o{c[0], 0, 0, 0};
      for (int a = 0; a < 3; ++a) {
        const int s_out = in_stride[a] / r[a];
        o[a + 1] = ((c[a + 1] / in_stride[a]) * r[a] + off[a] - p[a]) * s_out;
      }
      push(o);
    }
  }
  return out;
}

std::vector<RefEdge> ref_edges(RefKind kind, const std::vector<Coord>& input, const I3& in_stride,
                               const std::vector<Coord>& output, const I3& out_stride, const RefSpec& spec) {
  const auto offsets = ref_offsets(spec);
  const I3 r = effective_stride(kind, spec);
  const I3 p = effective_padding(kind, spec);
  std::vector<RefEdge> edges;
  for (int o = 0; o < static_cast<int>(output.size()); ++o) {
    for (int k = 0; k < static_cast<int>(offsets.size()); ++k) {
      for (int i = 0; i < static_cast<int>(input.size()); ++i) {
        if (input[i][0] != output[o][0]) continue;
        bool hit = true;
        for (int a = 0; a < 3; ++a) {
          const int v = input[i][a + 1] / in_stride[a];
          const int u = output[o][a + 1] / out_stride[a];
          const int lhs = is_transposed(kind) ? u : v;
          const int rhs = is_transposed(kind) ? v * r[a] + offsets[k][a] - p[a] : u * r[a] + offsets[k][a] - p[a];
          hit = hit && lhs == rhs;
        }
        if (hit) edges.push_back({i, o, k});
      }
    }
  }
  return edges;
}

RefConvResult ref_conv(RefKind kind, const std::vector<Coord>& input, const I3& in_stride,
                       const std::vector<double>& feats, int c_in, const std::vector<double>& weight, int c_out,
                       const std::vector<double>& bias, const RefSpec& spec, const std::vector<Coord>& output,
                       const I3& out_stride) {
  // The input as a dense grid (per batch item) over its bounding box of
  // logical coordinates; empty cells are zero.
  const auto offsets = ref_offsets(spec);
  const I3 r = effective_stride(kind, spec);
  const I3 p = effective_padding(kind, spec);
  std::map<int, std::pair<I3, I3>> box;  // batch -> (lo, hi)
  for (const Coord& c : input) {
    auto [it, fresh] = box.try_emplace(c[0]);
    for (int a = 0; a < 3; ++a) {
      const int v = c[a + 1] / in_stride[a];
      if (fresh) it->second.first[a] = it->second.second[a] = v;
      it->second.first[a] = std::min(it->second.first[a], v);
      it->second.second[a] = std::max(it->second.second[a], v);
    }
  }
  struct Grid {
    I3 lo, dim;
    std::vector<double> x, ax;  // values and absolute values, (cells, C_in)
  };
  std::map<int, Grid> grids;
  for (const auto& [b, lohi] : box) {
    Grid g;
    g.lo = lohi.first;
    for (int a = 0; a < 3; ++a) g.dim[a] = lohi.second[a] - lohi.first[a] + 1;
    g.x.assign(static_cast<std::size_t>(g.dim[0]) * g.dim[1] * g.dim[2] * c_in, 0.0);
    g.ax = g.x;
    grids[b] = std::move(g);
  }
  auto cell = [](const Grid& g, const I3& v) -> long {
    for (int a = 0; a < 3; ++a)
      if (v[a] < g.lo[a] || v[a] >= g.lo[a] + g.dim[a]) return -1;
    return ((static_cast<long>(v[0] - g.lo[0]) * g.dim[1]) + (v[1] - g.lo[1])) * g.dim[2] + (v[2] - g.lo[2]);
  };
  for (std::size_t i = 0; i < input.size(); ++i) {
    Grid& g = grids[input[i][0]];
    const I3 v{input[i][1] / in_stride[0], input[i][2] / in_stride[1], input[i][3] / in_stride[2]};
    const long at = cell(g, v);
    for (int c = 0; c < c_in; ++c) {
      g.x[static_cast<std::size_t>(at * c_in + c)] =
          feats[i * static_cast<std::size_t>(c_in) + static_cast<std::size_t>(c)];
      g.ax[static_cast<std::size_t>(at * c_in + c)] =
          std::abs(feats[i * static_cast<std::size_t>(c_in) + static_cast<std::size_t>(c)]);
    }
  }

  RefConvResult res;
  res.values.assign(output.size() * static_cast<std::size_t>(c_out), 0.0);
  res.magnitude.assign(output.size() * static_cast<std::size_t>(c_out), 0.0);
  auto accumulate = [&](std::size_t o, const Grid& g, long at, int k) {
    for (int ci = 0; ci < c_in; ++ci) {
      const double xv = g.x[static_cast<std::size_t>(at * c_in + ci)];
      const double av = g.ax[static_cast<std::size_t>(at * c_in + ci)];
      for (int co = 0; co < c_out; ++co) {
        const double w = weight[(static_cast<std::size_t>(k) * c_in + ci) * c_out + co];
        res.values[o * c_out + co] += xv * w;
        res.magnitude[o * c_out + co] += av * std::abs(w);
      }
    }
  };
  for (std::size_t o = 0; o < output.size(); ++o) {
    for (int co = 0; co < c_out; ++co) {
      const double b = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(co)];
      res.values[o * c_out + co] = b;
      res.magnitude[o * c_out + co] = std::abs(b);
    }
    auto git = grids.find(output[o][0]);
    if (git == grids.end()) continue;
    const Grid& g = git->second;
    const I3 u{output[o][1] / out_stride[0], output[o][2] / out_stride[1], output[o][3] / out_stride[2]};
    if (!is_transposed(kind)) {
      // Dense correlation: input cell u * r + off_k - p.
      for (int k = 0; k < static_cast<int>(offsets.size()); ++k) {
        const I3 v{u[0] * r[0] + offsets[k][0] - p[0], u[1] * r[1] + offsets[k][1] - p[1],
                   u[2] * r[2] + offsets[k][2] - p[2]};
        const long at = cell(g, v);
        if (at >= 0) accumulate(o, g, at, k);
      }
    }
  }
  if (is_transposed(kind)) {
    // Transposed convolution as the adjoint scatter: every input cell v sends
    // X[v] * W[k] to v * r + off_k - p (input-driven, unlike the engine's
    // output-driven gather). Cells that are empty contribute zero and are skipped.
    std::map<Coord, std::pair<std::vector<double>, std::vector<double>>> scattered;
    for (std::size_t i = 0; i < input.size(); ++i) {
      const Grid& g = grids[input[i][0]];
      const I3 v{input[i][1] / in_stride[0], input[i][2] / in_stride[1], input[i][3] / in_stride[2]};
      const long at = cell(g, v);
      for (int k = 0; k < static_cast<int>(offsets.size()); ++k) {
        const Coord f{input[i][0], v[0] * r[0] + offsets[k][0] - p[0], v[1] * r[1] + offsets[k][1] - p[1],
                      v[2] * r[2] + offsets[k][2] - p[2]};
        auto& acc = scattered[f];
        acc.first.resize(static_cast<std::size_t>(c_out), 0.0);
        acc.second.resize(static_cast<std::size_t>(c_out), 0.0);
        for (int ci = 0; ci < c_in; ++ci) {
          const double xv = g.x[static_cast<std::size_t>(at * c_in + ci)];
          const double av = g.ax[static_cast<std::size_t>(at * c_in + ci)];
          for (int co = 0; co < c_out; ++co) {
            const double w = weight[(static_cast<std::size_t>(k) * c_in + ci) * c_out + co];
            acc.first[static_cast<std::size_t>(co)] += xv * w;
            acc.second[static_cast<std::size_t>(co)] += av * std::abs(w);
          }
        }
      }
    }
    for (std::size_t o = 0; o < output.size(); ++o) {
      const Coord f{output[o][0], output[o][1] / out_stride[0], output[o][2] / out_stride[1],
                    output[o][3] / out_stride[2]};
      auto it = scattered.find(f);
      if (it == scattered.end()) continue;
      for (int co = 0; co < c_out; ++co) {
        res.values[o * c_out + co] += it->second.first[static_cast<std::size_t>(co)];
        res.magnitude[o * c_out + co] += it->second.second[static_cast<std::size_t>(co)];
      }
    }
  }
  return res;
}

}  // namespace lattice::testing
