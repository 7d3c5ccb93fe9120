// Host side of the sticky device error slot (see device/errors.cuh).
#pragma once

namespace lattice::cuda {

enum class ErrorCode : int {
  none = 0,
  key_overflow = 1,          // values: row, x, y, z of the generated coordinate
  non_finite_point = 2,      // values: point row
  duplicate_coordinate = 3,  // values: row a, row b
  voxel_out_of_range = 4,    // values: point row, axis, cell
  batch_out_of_range = 5,    // values: row, batch
  not_divisible = 6,         // values: row, axis, coordinate, stride
  coordinate_overflow = 7,   // values: row, axis, coordinate, stride
  empty_batch_max = 8,       // values: batch item
  batch_beyond_size = 9,     // values: row, batch, batch_size
};

struct ErrorSlot {
  int code;
  int op;
  long long values[4];
};

// The device's slot (allocated and zeroed on first use).
ErrorSlot* error_slot(int device);
// A small integer naming `op` in error slots.
int op_id(const char* op);
// Host-facing: after the stream has been synchronized, raises the recorded error (and clears it).
void raise_recorded_error(int device);

}  // namespace lattice::cuda
