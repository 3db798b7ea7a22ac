// The recipe parser: any text either becomes a validated recipe or is refused with one
// dino::Error naming the key (never a JSON library exception, a crash or an overflow).
#include <string>

#include "core/error.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    dino::parse_recipe(dino::parse_config_text(text, "fuzz.json"), "fuzz.json");
  } catch (const dino::Error&) {
  }
  return 0;
}
