// The safetensors reader on arbitrary bytes: it either returns tensors that fit the file or
// throws a dino::Error; it must never read outside the input or allocate what the input does
// not hold.
#include <sstream>

#include "core/error.h"
#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    const dino::SafeTensors st = dino::read_safetensors(in, size, "fuzz.safetensors");
    size_t bytes = 0;
    for (const auto& [name, t] : st.tensors) bytes += t.nbytes();
    if (bytes > size) std::abort();  // tensors hold more than the file did
  } catch (const dino::Error&) {
  }
  return 0;
}
