// The image decoders of folder datasets: one file in a one-class folder, decoded by content
// (JPEG through libjpeg-turbo, at full size and reduced by 8 in the DCT domain; PNG and BMP
// through stb_image). Each decode gives an image of the size the header promised or throws a
// dino::Error naming the file.
#include "core/error.h"
#include "data/datasets.h"
#include "fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = dino::fuzz::scratch() / "folder";
  dino::fuzz::write_file(dir / "class" / "image.png", data, size);
  try {
    const auto ds = dino::data::open_image_folder(dir.string(), dino::data::Split::train);
    for (const int reduction : {1, 8}) {
      dino::data::SourceImage src;
      int planned_h = 0, planned_w = 0;
      ds->load(0, src, [&](int h, int w) {
        planned_h = h;
        planned_w = w;
        return reduction;
      });
      if (src.full_height != planned_h || src.full_width != planned_w) std::abort();
      if (src.u8.size() != size_t(src.channels) * src.height * src.width) std::abort();
    }
  } catch (const dino::Error&) {
  }
  return 0;
}
