// Relation views on the device. Everything is sized by capacities and bounded
// by the device-side counts; sorts are CUB's stable radix sorts, so every view
// is deterministic and matches the CPU's.
#include <bit>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/scan.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;

struct EdgeView {
  const std::int32_t* in_rows;
  const std::int32_t* out_rows;
  const std::int32_t* kernel_ids;
  const std::int32_t* counts;  // (edge_count, out_count)
  std::int64_t capacity;
};

EdgeView edges_of(const Relation& rel) {
  return {ptr<std::int32_t>(rel.in_rows()), ptr<std::int32_t>(rel.out_rows()), ptr<std::int32_t>(rel.kernel_ids()),
          ptr<std::int32_t>(rel.counts()), rel.edge_capacity()};
}

// keys[e] = key[e] for live edges, `sentinel` past the edge count; ids[e] = e;
// histogram[key[e]] += 1 for live edges.
__global__ void k_bucket_keys(const std::int32_t* key, EdgeView ev, std::uint32_t sentinel, std::uint32_t* keys,
                              std::int32_t* ids, std::int32_t* histogram) {
  const std::int64_t n = device::read_count(ev.counts, ev.capacity);
  LATTICE_GRID_LOOP(e, ev.capacity) {
    const bool live = e < n;
    keys[e] = live ? static_cast<std::uint32_t>(key[e]) : sentinel;
    ids[e] = static_cast<std::int32_t>(e);
    if (live) atomicAdd(&histogram[key[e]], 1);
  }
}

// Groups live edges by `key` (in_rows or kernel_ids): offsets (buckets + 1), edge ids.
void bucket(const Relation& rel, const Array& key, std::int64_t buckets, Array& offsets, Array& edge_ids) {
  const Device dev = rel.device();
  const cudaStream_t stream = stream_of(dev);
  const EdgeView ev = edges_of(rel);
  Array keys = Array::empty(Shape{ev.capacity}, DType::u32, dev);
  Array ids = Array::empty(Shape{ev.capacity}, DType::i32, dev);
  Array histogram = Array::zeros(Shape{buckets}, DType::i32, dev);
  if (ev.capacity > 0) {
    k_bucket_keys<<<grid_for(ev.capacity, k_threads), k_threads, 0, stream>>>(
        ptr<std::int32_t>(key), ev, static_cast<std::uint32_t>(buckets), ptr<std::uint32_t>(keys),
        ptr<std::int32_t>(ids), ptr<std::int32_t>(histogram));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  Array sorted_keys;
  const int end_bit = std::max(1, static_cast<int>(std::bit_width(static_cast<std::uint64_t>(buckets))));
  sort_pairs(keys, ids, sorted_keys, edge_ids, 0, end_bit);
  offsets = Array::empty(Shape{buckets + 1}, DType::i32, dev);
  exclusive_sum_inclusive_tail(histogram, offsets);
}

__global__ void k_scatter_map(EdgeView ev, int volume, std::int32_t* map) {
  const std::int64_t n = device::read_count(ev.counts, ev.capacity);
  LATTICE_GRID_LOOP(e, n) {
    map[static_cast<std::int64_t>(ev.out_rows[e]) * volume + ev.kernel_ids[e]] = ev.in_rows[e];
  }
}

__global__ void k_scatter_input_map(EdgeView ev, int volume, std::int32_t* map) {
  const std::int64_t n = device::read_count(ev.counts, ev.capacity);
  LATTICE_GRID_LOOP(e, n) {
    map[static_cast<std::int64_t>(ev.in_rows[e]) * volume + ev.kernel_ids[e]] = ev.out_rows[e];
  }
}

__global__ void k_masks_from_map(const std::int32_t* map, std::int64_t rows, int volume, int words,
                                 std::uint32_t* masks) {
  LATTICE_GRID_LOOP(idx, rows * words) {
    const std::int64_t o = idx / words;
    const int w = static_cast<int>(idx % words);
    std::uint32_t bits = 0;
    for (int k = w * 32; k < min(volume, (w + 1) * 32); ++k)
      bits |= static_cast<std::uint32_t>(map[o * volume + k] >= 0) << (k - w * 32);
    masks[idx] = bits;
  }
}

__global__ void k_out_histogram(EdgeView ev, std::int32_t* histogram) {
  const std::int64_t n = device::read_count(ev.counts, ev.capacity);
  LATTICE_GRID_LOOP(e, n) { atomicAdd(&histogram[ev.out_rows[e]], 1); }
}

// First LSD pass: the identity permutation and the keys of word 0.
__global__ void k_mask_keys_first(const std::uint32_t* masks, const std::int32_t* out_count, std::int64_t cap,
                                  int words, std::uint32_t* keys, std::int32_t* perm) {
  const std::int64_t n = device::read_count(out_count, cap);
  LATTICE_GRID_LOOP(j, cap) {
    perm[j] = static_cast<std::int32_t>(j);
    keys[j] = j < n ? ~masks[j * words] : 0xffffffffu;
  }
}

// Sort key of word w for sorted position j: complemented mask (fuller masks
// first), all-ones for capacity rows so they stay last.
__global__ void k_mask_keys(const std::uint32_t* masks, const std::int32_t* perm, const std::int32_t* out_count,
                            std::int64_t cap, int words, int w, std::uint32_t* keys) {
  const std::int64_t n = device::read_count(out_count, cap);
  LATTICE_GRID_LOOP(j, cap) {
    const std::int64_t o = perm[j];
    keys[j] = o < n ? ~masks[o * words + w] : 0xffffffffu;
  }
}

// Sorted map, its K-major transpose and the tile OR-masks (tile_masks zeroed first).
__global__ void k_gather_sorted(const std::int32_t* map, const std::uint32_t* masks, const std::int32_t* perm,
                                const std::int32_t* out_count, std::int64_t cap, int volume, int words, int tile_rows,
                                std::int32_t* sorted, std::int32_t* sorted_kt, std::uint32_t* tile_masks) {
  // Active rows sort first: positions past the count are capacity and stay unwritten.
  const std::int64_t n = device::read_count(out_count, cap);
  LATTICE_GRID_LOOP(idx, n * volume) {
    const std::int64_t j = idx / volume;
    const int k = static_cast<int>(idx % volume);
    const std::int64_t o = perm[j];
    const std::int32_t v = map[o * volume + k];
    sorted[idx] = v;
    sorted_kt[static_cast<std::int64_t>(k) * cap + j] = v;
    if (k < words) {
      const std::uint32_t bits = masks[o * words + k];
      if (bits) atomicOr(&tile_masks[(j / tile_rows) * words + k], bits);
    }
  }
}

}  // namespace

OutputCsr build_output_csr(const Relation& rel) {
  const Device dev = rel.device();
  const std::int64_t cap = rel.output()->capacity();
  Array histogram = Array::zeros(Shape{cap}, DType::i32, dev);
  const EdgeView ev = edges_of(rel);
  if (ev.capacity > 0) {
    k_out_histogram<<<grid_for(ev.capacity, k_threads), k_threads, 0, stream_of(dev)>>>(ev,
                                                                                        ptr<std::int32_t>(histogram));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  OutputCsr csr{Array::empty(Shape{cap + 1}, DType::i32, dev)};
  exclusive_sum_inclusive_tail(histogram, csr.row_offsets);
  return csr;
}

InputCsr build_input_csr(const Relation& rel) {
  InputCsr v;
  bucket(rel, rel.in_rows(), rel.input_capacity(), v.offsets, v.edge_ids);
  return v;
}

KernelCsr build_kernel_csr(const Relation& rel) {
  KernelCsr v;
  bucket(rel, rel.kernel_ids(), rel.volume(), v.offsets, v.edge_ids);
  return v;
}

ImplicitGemmMap build_implicit_gemm_map(const Relation& rel) {
  const Device dev = rel.device();
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = rel.output()->capacity();
  const auto volume = static_cast<int>(rel.volume());
  ImplicitGemmMap v;
  v.mask_words = (volume + 31) / 32;
  v.out_in_map = Array::full(Shape{cap, volume}, DType::i32, -1, dev);
  v.masks = Array::empty(Shape{cap, v.mask_words}, DType::u32, dev);
  const EdgeView ev = edges_of(rel);
  if (ev.capacity > 0) {
    k_scatter_map<<<grid_for(ev.capacity, k_threads), k_threads, 0, stream>>>(ev, volume,
                                                                              ptr<std::int32_t>(v.out_in_map));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  if (cap > 0) {
    k_masks_from_map<<<grid_for(cap * v.mask_words, k_threads), k_threads, 0, stream>>>(
        ptr<std::int32_t>(v.out_in_map), cap, volume, v.mask_words, ptr<std::uint32_t>(v.masks));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return v;
}

InputGemmMap build_input_gemm_map(const Relation& rel) {
  const Device dev = rel.device();
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = rel.input_capacity();
  const auto volume = static_cast<int>(rel.volume());
  InputGemmMap v;
  v.mask_words = (volume + 31) / 32;
  v.in_out_map = Array::full(Shape{cap, volume}, DType::i32, -1, dev);
  v.masks = Array::empty(Shape{cap, v.mask_words}, DType::u32, dev);
  const EdgeView ev = edges_of(rel);
  if (ev.capacity > 0) {
    k_scatter_input_map<<<grid_for(ev.capacity, k_threads), k_threads, 0, stream>>>(ev, volume,
                                                                                    ptr<std::int32_t>(v.in_out_map));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  if (cap > 0) {
    k_masks_from_map<<<grid_for(cap * v.mask_words, k_threads), k_threads, 0, stream>>>(
        ptr<std::int32_t>(v.in_out_map), cap, volume, v.mask_words, ptr<std::uint32_t>(v.masks));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return v;
}

SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation& rel, int tile_rows) {
  const ImplicitGemmMap& base = rel.implicit_gemm_map();
  const Device dev = rel.device();
  const cudaStream_t stream = stream_of(dev);
  const auto out = rel.output();
  const std::int64_t cap = out->capacity();
  const auto volume = static_cast<int>(rel.volume());
  const int words = base.mask_words;
  SortedImplicitGemmMap v;
  v.tile_rows = tile_rows;
  v.mask_words = words;
  Array perm = Array::empty(Shape{cap}, DType::i32, dev);
  // LSD over mask words: least significant word first, each pass stable.
  // Complemented masks agree above bit K % 32 of the last word, so those bits need no pass.
  Array keys = Array::empty(Shape{cap}, DType::u32, dev);
  const std::int32_t* out_count = ptr<std::int32_t>(out->active_rows());
  for (int w = 0; w < words && cap > 0; ++w) {
    if (w == 0) {
      k_mask_keys_first<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
          ptr<std::uint32_t>(base.masks), out_count, cap, words, ptr<std::uint32_t>(keys), ptr<std::int32_t>(perm));
    } else {
      k_mask_keys<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
          ptr<std::uint32_t>(base.masks), ptr<std::int32_t>(perm), out_count, cap, words, w, ptr<std::uint32_t>(keys));
    }
    LATTICE_CUDA_LAUNCH_CHECK();
    const int end_bit = (w == words - 1 && volume % 32 != 0) ? volume % 32 : 32;
    Array sorted_keys, next;
    sort_pairs(keys, perm, sorted_keys, next, 0, end_bit);
    perm = next;
  }
  v.perm = perm;
  v.sorted_map = Array::empty(Shape{cap, volume}, DType::i32, dev);
  v.sorted_map_kt = Array::empty(Shape{volume, cap}, DType::i32, dev);
  const std::int64_t tiles = (cap + tile_rows - 1) / tile_rows;
  v.tile_masks = Array::empty(Shape{tiles, words}, DType::u32, dev);
  if (tiles > 0) LATTICE_CUDA_CHECK(cudaMemsetAsync(v.tile_masks.raw(), 0, v.tile_masks.nbytes(), stream));
  if (cap > 0) {
    k_gather_sorted<<<grid_for(cap * volume, k_threads), k_threads, 0, stream>>>(
        ptr<std::int32_t>(base.out_in_map), ptr<std::uint32_t>(base.masks), ptr<std::int32_t>(v.perm), out_count, cap,
        volume, words, tile_rows, ptr<std::int32_t>(v.sorted_map), ptr<std::int32_t>(v.sorted_map_kt),
        ptr<std::uint32_t>(v.tile_masks));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return v;
}

}  // namespace lattice::cuda
