// The CUDA backend of a build without CUDA: none. Linked instead of kernels/cuda's backend, so
// the core asks for it the same way in every build (core/backend.h).
#include "core/backend.h"

namespace dino {

const Backend* cuda_backend() { return nullptr; }

}  // namespace dino
