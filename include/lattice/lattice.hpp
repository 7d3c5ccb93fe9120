// The whole public C++ API of lattice.
#pragma once

#include "lattice/core/array.hpp"
#include "lattice/core/backend_info.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/kernel_spec.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/core/trace.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/voxelize.hpp"
#include "lattice/sim/lidar_scene.hpp"
#include "lattice/version.hpp"
