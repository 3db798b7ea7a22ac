#pragma once
// safetensors read/write (8-byte little-endian header length, JSON header, raw data).
// Writes go to "<path>.tmp" and are renamed into place, so a crash never leaves a torn file.
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

}  // namespace dino
