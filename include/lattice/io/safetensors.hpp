// safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3],
//    "data_offsets": [begin, end]}, ...}
// then the tensor bytes, row-major little-endian, offsets relative to the end
// of the header. dtypes: F16 BF16 F32 F64 I32 I64 U8 U32 (lattice's eight).
//
// Writing: tensors are laid out in the given order, contiguous from offset 0;
// the JSON has no whitespace, "__metadata__" first (omitted when empty, keys
// sorted), then the tensors in the given order, and is padded with spaces to a
// multiple of 8 bytes (as the reference implementation does). CUDA arrays are
// copied to the host first.
//
// Reading is strict: the header must be a JSON object (strict parser: no
// trailing commas, no comments, depth <= 64); every tensor entry has exactly
// dtype/shape/data_offsets; offsets must tile the data section exactly (no
// gaps, overlaps or bytes outside it); sizes must match shape x dtype; names
// are unique and non-empty; the header length is at most 100 MB and within the
// file. Any violation raises IoError naming the file and the problem. Tensors
// are returned in data-offset order (the writer's order for files it wrote).
//
// TensorDict is the same type as nn::StateDict (module.hpp, optim.hpp), so
// save_safetensors(path, model.state_dict()) works directly.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lattice/core/array.hpp"

namespace lattice::io {

using TensorDict = std::vector<std::pair<std::string, Array>>;
using Metadata = std::map<std::string, std::string>;

void save_safetensors(const std::string& path, const TensorDict& tensors, const Metadata& metadata = {});

// Loads every tensor onto `device`; the file's "__metadata__" goes to *metadata when given.
TensorDict load_safetensors(const std::string& path, Device device = Device::cpu(), Metadata* metadata = nullptr);

// The same two, on bytes in memory (the file functions are thin wrappers).
std::string serialize_safetensors(const TensorDict& tensors, const Metadata& metadata = {});
TensorDict deserialize_safetensors(const std::string& bytes, Device device = Device::cpu(),
                                   Metadata* metadata = nullptr, const std::string& source = "<memory>");

}  // namespace lattice::io
