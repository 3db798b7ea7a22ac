// [CLS] embeddings of image files from a model trained by `dino train` (or a backbone file
// from `dino export` / `dino import`), through the installed library (examples/README.md).
#include "train/embed.h"

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT IMAGE...\n", argv[0]);
    return 2;
  }
  try {
    const dino::Backbone model = dino::load_backbone(argv[1]);
    const auto images = dino::data::open_image_files(
        std::vector<std::string>(argv + 2, argv + argc), int(model.model->config().in_chans));
    const dino::Embeddings e = dino::embed(*model.model, *images, model.norm);
    for (int64_t i = 0; i < e.cls.size(0); ++i) {
      std::printf("%s", e.paths[size_t(i)].c_str());
      for (int64_t j = 0; j < e.cls.size(1); ++j)
        std::printf(" %.6g", e.cls.data<float>()[i * e.cls.size(1) + j]);
      std::printf("\n");
    }
  } catch (const dino::Error& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 1;
  }
  return 0;
}
