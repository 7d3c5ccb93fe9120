// Dtype dispatch and element conversion helpers for CPU kernels.
#pragma once

#include <cstdint>
#include <type_traits>

#include "lattice/core/dtype.hpp"
#include "lattice/core/error.hpp"

namespace lattice::cpu {

// Calls f.template operator()<T>() with T the C++ type of `t`.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f16:
      return f.template operator()<half>();
    case DType::bf16:
      return f.template operator()<bfloat16>();
    case DType::f32:
      return f.template operator()<float>();
    case DType::f64:
      return f.template operator()<double>();
    case DType::i32:
      return f.template operator()<std::int32_t>();
    case DType::i64:
      return f.template operator()<std::int64_t>();
    case DType::u8:
      return f.template operator()<std::uint8_t>();
    case DType::u32:
      return f.template operator()<std::uint32_t>();
  }
  throw TypeError("[cpu] unknown dtype");
}

// Same, for the floating dtypes only.
template <class F>
decltype(auto) visit_float(DType t, F&& f) {
  switch (t) {
    case DType::f16:
      return f.template operator()<half>();
    case DType::bf16:
      return f.template operator()<bfloat16>();
    case DType::f32:
      return f.template operator()<float>();
    case DType::f64:
      return f.template operator()<double>();
    default:
      break;
  }
  throw TypeError(detail::concat("[cpu] expected a floating dtype, got ", dtype_name(t)));
}

template <class T>
inline constexpr bool is_storage16_v = std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

// The arithmetic type a storage type is computed in: float for 16-bit types.
template <class T>
using compute_t = std::conditional_t<is_storage16_v<T>, float, T>;

template <class T>
inline compute_t<T> load(T v) {
  if constexpr (is_storage16_v<T>) {
    return to_float(v);
  } else {
    return v;
  }
}

template <class T, class V>
inline T store(V v) {
  if constexpr (is_storage16_v<T>) {
    return from_float<T>(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// General element conversion between any two dtypes' C++ types.
template <class D, class S>
inline D convert(S v) {
  if constexpr (is_storage16_v<S>) {
    return store<D>(to_float(v));
  } else if constexpr (is_storage16_v<D>) {
    return from_float<D>(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace lattice::cpu
