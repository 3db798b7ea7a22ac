// The NCCL backend of a build without NCCL: none. Linked instead of dist/nccl.cpp, so the
// world asks for a device communicator the same way in every build (dist/nccl.h).
#include "core/error.h"
#include "dist/nccl.h"

namespace dino::dist {

std::unique_ptr<Communicator> make_nccl_communicator(Communicator*, int, int, double) {
  throw Error(
      "[dist] data-parallel training on CUDA needs NCCL, and this build has none "
      "(configure found no libnccl: install NCCL or point CMake at it with "
      "-DDINO_NCCL_ROOT=DIR)");
}

std::string nccl_version() { return "no NCCL"; }

}  // namespace dino::dist
