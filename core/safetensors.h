#pragma once
// safetensors read/write (8-byte little-endian header length, JSON header, raw data).
// Writes are atomic (core/atomic_file.h): a crash or power loss never leaves a torn file.
// Reads validate the whole header before allocating anything, as the format requires: known
// dtypes, shapes whose byte size matches their offsets, offsets in order, not overlapping and
// covering the data section exactly.
#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dino {

struct SafeTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order, CPU tensors
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
};

// Tensors may live on any device; they are copied to the host to be written.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafeTensors load_safetensors(const std::string& path);
// The same from a stream of `size` bytes; `name` stands for the file in errors.
SafeTensors read_safetensors(std::istream& in, uint64_t size, const std::string& name);
// The metadata alone, read from the header without the tensors (a recipe from a large
// checkpoint).
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

}  // namespace dino
