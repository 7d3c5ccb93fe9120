// Sticky per-device error slot (SPEC §14): kernels that meet bad values
// already on the GPU (overflowing or non-finite coordinates, duplicates)
// record the first error here and carry on; the next host-facing call raises
// it as a typed error naming the op.
#pragma once

#include "backend/cuda/errors.hpp"

namespace lattice::cuda::device {

__device__ __forceinline__ void record_error(ErrorSlot* slot, ErrorCode code, int op, long long a = 0, long long b = 0,
                                             long long c = 0, long long d = 0) {
  if (atomicCAS(&slot->code, 0, static_cast<int>(code)) == 0) {
    slot->op = op;
    slot->values[0] = a;
    slot->values[1] = b;
    slot->values[2] = c;
    slot->values[3] = d;
  }
}

}  // namespace lattice::cuda::device
