// Front end of weight quantization: argument checks, geometry, dispatch to the
// CPU or CUDA kernels (backend/quantize_kernels.hpp).
#include "lattice/core/quantized_weight.hpp"

#include <limits>

#include "backend/quantize_kernels.hpp"

namespace lattice {

namespace {

constexpr const char* k_ctor = "QuantizedWeight";

void check_bits_group(int bits, int group_size, const char* op) {
  check(bits == 4 || bits == 8, op, "bits", "expected 4 or 8, got ", bits);
  check(group_size == 32 || group_size == 64 || group_size == 128, op, "group_size", "expected 32, 64 or 128, got ",
        group_size);
}

std::int64_t padded(std::int64_t cin, int group_size) { return (cin + group_size - 1) / group_size * group_size; }

// Strides of the floating layout (see quant::Geometry).
quant::Geometry geometry(WeightLayout layout, std::int64_t volume, std::int64_t cin, std::int64_t cout, int group_size,
                         int bits) {
  quant::Geometry g;
  g.volume = volume;
  g.cout = cout;
  g.cin = cin;
  g.cin_padded = padded(cin, group_size);
  g.group_size = group_size;
  g.bits = bits;
  switch (layout) {
    case WeightLayout::linear:  // (C_out, C_in)
      g.stride_k = 0, g.stride_co = cin, g.stride_ci = 1;
      break;
    case WeightLayout::kernel_major:  // (K, C_in, C_out)
      g.stride_k = cin * cout, g.stride_co = 1, g.stride_ci = cout;
      break;
    case WeightLayout::dense_5d:  // (C_out, Kx, Ky, Kz, C_in)
      g.stride_k = cin, g.stride_co = volume * cin, g.stride_ci = 1;
      break;
  }
  return g;
}

Shape float_shape(WeightLayout layout, Int3 ks, std::int64_t cin, std::int64_t cout) {
  switch (layout) {
    case WeightLayout::linear:
      return Shape{cout, cin};
    case WeightLayout::kernel_major:
      return Shape{ks.product(), cin, cout};
    case WeightLayout::dense_5d:
      break;
  }
  return Shape{cout, ks.x, ks.y, ks.z, cin};
}

Shape packed_shape(WeightLayout layout, std::int64_t volume, std::int64_t cout, std::int64_t last) {
  return layout == WeightLayout::linear ? Shape{cout, last} : Shape{volume, cout, last};
}

// The cube root of k when k is a cube, else 0.
int cube_root(std::int64_t k) {
  for (std::int64_t n = 1; n * n * n <= k; ++n) {
    if (n * n * n == k) return static_cast<int>(n);
  }
  return 0;
}

}  // namespace

std::string_view layout_name(WeightLayout layout) {
  switch (layout) {
    case WeightLayout::linear:
      return "linear";
    case WeightLayout::kernel_major:
      return "kernel_major";
    case WeightLayout::dense_5d:
      return "dense_5d";
  }
  return "?";
}

WeightLayout parse_weight_layout(std::string_view name, std::string_view op, std::string_view arg) {
  if (name == "linear") return WeightLayout::linear;
  if (name == "kernel_major") return WeightLayout::kernel_major;
  if (name == "dense_5d") return WeightLayout::dense_5d;
  fail(op, arg, "expected 'linear', 'kernel_major' or 'dense_5d', got '", name, "'");
}

QuantizedWeight::QuantizedWeight(Array weight, Array scales, Array biases, int group_size, int bits, int in_channels,
                                 int out_channels, Int3 kernel_size, WeightLayout layout)
    : weight_(std::move(weight)),
      scales_(std::move(scales)),
      biases_(std::move(biases)),
      group_size_(group_size),
      bits_(bits),
      in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_size_(kernel_size),
      layout_(layout) {
  check_bits_group(bits, group_size, k_ctor);
  check(in_channels >= 1, k_ctor, "in_channels", "expected >= 1, got ", in_channels);
  check(out_channels >= 1, k_ctor, "out_channels", "expected >= 1, got ", out_channels);
  check(kernel_size.x >= 1 && kernel_size.y >= 1 && kernel_size.z >= 1, k_ctor, "kernel_size",
        "expected sizes >= 1, got ", kernel_size.str());
  check(layout != WeightLayout::linear || kernel_size == Int3{1}, k_ctor, "kernel_size",
        "the linear layout has no kernel (expected (1, 1, 1)), got ", kernel_size.str());
  check(weight_.defined(), k_ctor, "weight", "undefined array");
  check(scales_.defined(), k_ctor, "scales", "undefined array");
  check(biases_.defined(), k_ctor, "biases", "undefined array");
  check<TypeError>(weight_.dtype() == DType::u32, k_ctor, "weight", "expected uint32 packed codes, got ",
                   dtype_name(weight_.dtype()));
  check<TypeError>(scales_.dtype() == DType::f32 || scales_.dtype() == DType::f16, k_ctor, "scales",
                   "expected float32 or float16, got ", dtype_name(scales_.dtype()));
  check<TypeError>(biases_.dtype() == scales_.dtype(), k_ctor, "biases", "dtype ", dtype_name(biases_.dtype()),
                   " differs from the scales' ", dtype_name(scales_.dtype()));
  check<DeviceError>(scales_.device() == weight_.device(), k_ctor, "scales", "is on ", scales_.device().str(),
                     " but the weight is on ", weight_.device().str());
  check<DeviceError>(biases_.device() == weight_.device(), k_ctor, "biases", "is on ", biases_.device().str(),
                     " but the weight is on ", weight_.device().str());
  const std::int64_t volume = kernel_size.product();
  const Shape w_shape = packed_shape(layout, volume, out_channels, words_per_row());
  const Shape s_shape = packed_shape(layout, volume, out_channels, groups_per_row());
  check(weight_.shape() == w_shape, k_ctor, "weight", "expected shape ", w_shape.str(), " for layout ",
        layout_name(layout), ", ", bits, "-bit codes of ", in_channels, " input channels in groups of ", group_size,
        ", got ", weight_.shape().str());
  check(scales_.shape() == s_shape, k_ctor, "scales", "expected shape ", s_shape.str(), ", got ",
        scales_.shape().str());
  check(biases_.shape() == s_shape, k_ctor, "biases", "expected shape ", s_shape.str(), ", got ",
        biases_.shape().str());
}

int QuantizedWeight::padded_in_channels() const { return static_cast<int>(padded(in_channels_, group_size_)); }
int QuantizedWeight::words_per_row() const { return padded_in_channels() * bits_ / 32; }
int QuantizedWeight::groups_per_row() const { return padded_in_channels() / group_size_; }

QuantizedWeight QuantizedWeight::to(Device device) const {
  if (device == this->device()) return *this;
  return QuantizedWeight(weight_.to(device), scales_.to(device), biases_.to(device), group_size_, bits_, in_channels_,
                         out_channels_, kernel_size_, layout_);
}

QuantizedWeight quantize_weight(const Array& weight, const QuantizeParams& params) {
  constexpr const char* op = "quantize_weight";
  check(weight.defined(), op, "weight", "undefined array");
  check<TypeError>(weight.dtype() == DType::f32 || weight.dtype() == DType::f16, op, "weight",
                   "expected float32 or float16 (scales and biases are stored in the weight's dtype), got ",
                   dtype_name(weight.dtype()));
  check(params.bits == 4 || params.bits == 8, op, "bits", "expected 4 or 8, got ", params.bits);
  if (params.group_size) {
    const int g = *params.group_size;
    check(g == 32 || g == 64 || g == 128, op, "group_size", "expected 32, 64 or 128 (or None), got ", g);
  }
  WeightLayout layout{};
  std::int64_t cin = 0, cout = 0;
  Int3 ks{1};
  switch (weight.ndim()) {
    case 2:
      layout = WeightLayout::linear;
      cout = weight.dim(0), cin = weight.dim(1);
      check(!params.kernel_size || *params.kernel_size == Int3{1}, op, "kernel_size",
            "a linear weight (C_out, C_in) has no kernel, got ", params.kernel_size ? params.kernel_size->str() : "");
      break;
    case 3: {
      layout = WeightLayout::kernel_major;
      const std::int64_t k = weight.dim(0);
      cin = weight.dim(1), cout = weight.dim(2);
      check(k >= 1, op, "weight", "kernel-major layout (K, C_in, C_out) has K = 0 (shape ", weight.shape().str(), ")");
      if (params.kernel_size) {
        ks = *params.kernel_size;
        check(ks.x >= 1 && ks.y >= 1 && ks.z >= 1, op, "kernel_size", "expected sizes >= 1, got ", ks.str());
        check(ks.product() == k, op, "kernel_size", ks.str(), " has volume ", ks.product(),
              " but the kernel-major weight has K = ", k, " (shape ", weight.shape().str(), ")");
      } else {
        const int n = cube_root(k);
        check(n > 0, op, "kernel_size", "required for a kernel-major weight whose K is not a cube (K = ", k, ", shape ",
              weight.shape().str(), ")");
        ks = Int3{n};
      }
      break;
    }
    case 5:
      layout = WeightLayout::dense_5d;
      cout = weight.dim(0), cin = weight.dim(4);
      check(weight.dim(1) >= 1 && weight.dim(2) >= 1 && weight.dim(3) >= 1, op, "weight",
            "dense layout (C_out, Kx, Ky, Kz, C_in) has an empty kernel axis (shape ", weight.shape().str(), ")");
      ks = Int3{static_cast<int>(weight.dim(1)), static_cast<int>(weight.dim(2)), static_cast<int>(weight.dim(3))};
      check(!params.kernel_size || *params.kernel_size == ks, op, "kernel_size",
            params.kernel_size ? params.kernel_size->str() : "", " differs from the dense weight's kernel ", ks.str());
      break;
    default:
      fail(op, "weight", "expected (C_out, C_in), (K, C_in, C_out) or (C_out, Kx, Ky, Kz, C_in), got shape ",
           weight.shape().str());
  }
  check(cin >= 1 && cout >= 1, op, "weight", "expected C_in >= 1 and C_out >= 1, got shape ", weight.shape().str());
  check(cin <= std::numeric_limits<int>::max() / 8 && cout <= std::numeric_limits<int>::max(), op, "weight",
        "too many channels (shape ", weight.shape().str(), ")");
  const int group_size = params.group_size.value_or(cin >= 64 ? 64 : 32);
  const quant::Geometry g = geometry(layout, ks.product(), cin, cout, group_size, params.bits);

  const Device device = weight.device();
  Array codes = Array::empty(Shape{g.rows(), g.words()}, DType::u32, device);
  Array scales = Array::empty(Shape{g.rows(), g.groups()}, weight.dtype(), device);
  Array biases = Array::empty(Shape{g.rows(), g.groups()}, weight.dtype(), device);
  if (device.is_cpu()) {
    cpu::quantize_weight(weight, g, codes, scales, biases);
  } else {
    Array nonfinite = Array::zeros(Shape{}, DType::i32, device);
    cuda::quantize_weight(weight, g, codes, scales, biases, nonfinite);
    // Quantization is an offline step, so reading the flag back (a wait) is fine here.
    check(nonfinite.item_int() == 0, op, "weight", "has non-finite values (or a group range that overflows float32)");
  }
  return QuantizedWeight(codes.reshape(packed_shape(layout, g.volume, cout, g.words())),
                         scales.reshape(packed_shape(layout, g.volume, cout, g.groups())),
                         biases.reshape(packed_shape(layout, g.volume, cout, g.groups())), group_size, params.bits,
                         static_cast<int>(cin), static_cast<int>(cout), ks, layout);
}

Array dequantize_weight(const QuantizedWeight& q, std::optional<DType> dtype) {
  const DType out_dtype = dtype.value_or(q.dtype());
  check<TypeError>(is_floating(out_dtype), "dequantize_weight", "dtype", "expected a floating dtype, got ",
                   dtype_name(out_dtype));
  const quant::Geometry g =
      geometry(q.layout(), q.kernel_volume(), q.in_channels(), q.out_channels(), q.group_size(), q.bits());
  Array out =
      Array::empty(float_shape(q.layout(), q.kernel_size(), q.in_channels(), q.out_channels()), out_dtype, q.device());
  if (q.device().is_cpu()) {
    cpu::dequantize_weight(q.weight(), q.scales(), q.biases(), g, out);
  } else {
    cuda::dequantize_weight(q.weight(), q.scales(), q.biases(), g, out);
  }
  return out;
}

}  // namespace lattice
