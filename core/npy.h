#pragma once
// NumPy .npy files (format version 1.0), the array format numpy.load reads with no other
// package: written to "<path>.tmp" and renamed into place, like safetensors.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dino {

// A float tensor (any device, f32/bf16/f64) as little-endian float32 ('<f4') of its shape.
void save_npy(const std::string& path, const Tensor& t);
// Integers as '<i8' of shape (n,).
void save_npy(const std::string& path, const std::vector<int64_t>& values);

}  // namespace dino
