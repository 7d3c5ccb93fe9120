// Readers for real point-cloud files: KITTI / SemanticKITTI `.bin` (+ `.label`),
// PCD (ascii, binary, binary_compressed), PLY (ascii, binary little/big
// endian) and LAS 1.0-1.4 (uncompressed). Every reader returns host arrays and
// throws IoError naming the file and what is wrong for a missing, truncated or
// malformed file; it never reads out of bounds.
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
// ASPRS LAS 1.0-1.4, point data record formats 0-10 (uncompressed; a LAZ file,
// with the compression bits of the format byte set, is rejected). Variable
// length records, wave packets, extra bytes beyond the format's fixed record
// and everything after the point records are skipped.
//   positions  int32 record * scale + offset per axis, computed in double and
//              stored as float32 absolute coordinates. Georeferenced values
//              lose precision: between 1e5 and 1e6 (UTM eastings) float32
//              steps are 1-6 cm, and no double copy is kept.
//   fields     "intensity", "return_number", "number_of_returns",
//              "classification" (formats 0-5: bits 0-4 of the byte; the
//              synthetic/key-point/withheld flags are dropped), "scan_angle"
//              (degrees; formats 6-10: the int16 times 0.006), "user_data",
//              "point_source_id"; then "gps_time" (formats 1, 3-10; float32:
//              GPS week seconds keep ~0.06 s, adjusted standard times ~1e9 s
//              only 64 s steps),
//              "red", "green", "blue" (formats 2, 3, 5, 7, 8, 10; raw 16-bit)
//              and "nir" (formats 8, 10).
//   labels     the classification as uint32.
// The point count is the legacy 32-bit one, or for LAS 1.4 the 64-bit one when
// the legacy count is 0 (two different non-zero counts are an error).
PointCloud read_las(const std::filesystem::path& path);

// Chooses the reader by extension (.bin, .pcd, .ply, .las, case-insensitive);
// throws IoError for others. A .bin is read without labels.
PointCloud read_point_cloud(const std::filesystem::path& path);

// A copy of `cloud` without the points whose x, y or z is NaN or infinite;
// fields and labels are filtered the same way. The input is not modified and
// the result shares no memory with it. Arrays are returned on the CPU. Throws
// TypeError unless positions are float32, ValueError unless they are (N, 3)
// and every field and the labels have N rows.
PointCloud drop_non_finite(const PointCloud& cloud);

}  // namespace lattice::io
