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
  // Row selection (rows.cu).
  row_index_out_of_range = 40,  // values: position, index, active rows
  duplicate_row_index = 41,     // values: first position, repeated position, index
  nan_score = 42,               // values: row
  mask_length = 43,             // values: mask length, active rows
  negative_count = 44,          // values: batch item, count
  batch_beyond_counts = 45,     // values: row, batch, number of counts
  // Row maps with -1 for absent (sets.cu, devoxelize.cu) and Morton codes (sets.cu).
  row_or_absent_out_of_range = 60,   // values: position, row, active rows
  morton_batch_range = 61,           // values: row, batch
  voxel_map_out_of_range = 62,       // values: point, entry, active rows
  neighbor_index_out_of_range = 63,  // values: query row, neighbour slot, index, source rows
  // Training (train.cu).
  label_out_of_range = 80,       // values: row, label, classes
  prediction_out_of_range = 81,  // values: row, predicted class, classes
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
