// Readers for real point-cloud files: KITTI / SemanticKITTI `.bin` (+ `.label`),
// PCD (ascii, binary, binary_compressed) and PLY (ascii, binary little/big
// endian). Every reader returns host arrays and throws IoError naming the file
// and what is wrong for a missing, truncated or malformed file; it never reads
// out of bounds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lattice/core/array.hpp"

namespace lattice::io {

struct PointCloud {
  // (N, 3) float32 x, y, z on the CPU.
  Array positions;
  // Extra per-point scalar fields as (N,) float32, in file order, e.g.
  // "intensity", "remission", "rgb" channels. Names are the file's own.
  std::vector<std::pair<std::string, Array>> fields;
  // (N,) uint32 raw labels when the source has them (SemanticKITTI: semantic
  // class in the low 16 bits, instance id in the high 16).
  std::optional<Array> labels;

  std::int64_t size() const { return positions.defined() ? positions.dim(0) : 0; }
  // The field named `name`, or null.
  const Array* field(const std::string& name) const;
};

// KITTI / SemanticKITTI velodyne scan: little-endian float32 x, y, z,
// remission per point (the file size must be a multiple of 16 bytes). The
// remission goes to field "remission". Labels are read only when `label_path`
// is given -- never guessed from sibling files -- and must have one entry per
// point.
PointCloud read_kitti_bin(const std::filesystem::path& path,
                          const std::optional<std::filesystem::path>& label_path = std::nullopt);
// SemanticKITTI .label file: little-endian uint32 per point, as a (N,) uint32
// array. `expected_points` < 0 skips the count check.
Array read_kitti_labels(const std::filesystem::path& path, std::int64_t expected_points = -1);

// PCD v0.5-v0.7, DATA ascii / binary / binary_compressed, field types I/U/F of
// 1, 2, 4 or 8 bytes. Every field but x, y, z becomes a float32 field: COUNT > 1
// gives name_0, name_1, ...; PCL's "_" padding is dropped; a packed 4-byte
// "rgb" gives "r", "g", "b" (and "rgba" also "a") as 0..255. An integer field
// "label" also fills `labels`. As in PCL, bytes after a binary payload are
// ignored; ascii data must hold exactly POINTS non-empty lines.
PointCloud read_pcd(const std::filesystem::path& path);
// PLY ascii / binary_little_endian / binary_big_endian. The "vertex" element
// must have scalar x, y, z; its other scalar properties become float32 fields
// in file order; list properties and all other elements are skipped. Bytes
// after a binary body are ignored; an ascii body must end after the last element.
PointCloud read_ply(const std::filesystem::path& path);

// Chooses the reader by extension (.bin, .pcd, .ply, case-insensitive); throws
// IoError for others. A .bin is read without labels.
PointCloud read_point_cloud(const std::filesystem::path& path);

// A copy of `cloud` without the points whose x, y or z is NaN or infinite;
// fields and labels are filtered the same way. The input is not modified and
// the result shares no memory with it. Arrays are returned on the CPU. Throws
// TypeError unless positions are float32, ValueError unless they are (N, 3)
// and every field and the labels have N rows.
PointCloud drop_non_finite(const PointCloud& cloud);

}  // namespace lattice::io
