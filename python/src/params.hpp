// Argument parsing shared by the binding files: names of modes and kinds, the
// target-support argument, and the ops' parameter structs built from the
// Python layer's normalised tuples. Errors name the op and the argument.
#pragma once

#include <array>
#include <string>

#include "bindings.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::python {

using I3 = std::array<int, 3>;
using D3 = std::array<double, 3>;

// "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus".
ops::ActivationKind activation_kind(const std::string& kind, const char* op);
// "sum", "max", "avg" (or "mean").
ops::PoolMode pool_mode(const std::string& mode, const char* op);
// "linear" or "nearest".
ops::Interpolation interpolation_of(const std::string& name, const char* op);
// Target support: None, a SparseTensor, a CoordinateMapKey or an (N, 4) int32 array.
ops::TargetCoords target_from(nb::handle coordinates, const char* op);

ops::Conv3dParams conv3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation, nb::handle coordinates);
ops::SubmConv3dParams subm_conv3d_params(I3 kernel_size, I3 dilation);
ops::ConvTranspose3dParams conv_transpose3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation,
                                                   nb::handle coordinates);
ops::GenerativeConvTranspose3dParams generative_conv_transpose3d_params(I3 kernel_size, I3 stride,
                                                                        nb::handle coordinates);
ops::Pool3dParams pool3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation);
ops::DevoxelizeParams devoxelize_params(D3 voxel_size, D3 origin, const std::string& interpolation, const char* op);

}  // namespace lattice::python
