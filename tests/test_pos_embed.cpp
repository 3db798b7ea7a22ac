// Position embeddings for inputs of another size than the model's: DINO's bicubic
// interpolation of the patch grid, with the rows of the table following the image's rows.
#include <catch2/catch.hpp>

#include "core/rng.h"
#include "models/vit.h"

using namespace dino;

namespace {

// vit_micro on 16 x 16 single-channel images with 4 px patches: a 4 x 4 position table.
VitConfig micro_config() {
  VitConfig cfg = vit_preset("vit_micro");
  cfg.img_size = 16;
  cfg.patch_size = 4;
  cfg.in_chans = 1;
  return cfg;
}

// Sets the position table's entry (i, j) to value(i, j) in every channel.
template <class Value>
void fill_pos_table(VisionTransformer& vit, Value value) {
  const int64_t g = vit.config().grid(), D = vit.config().embed_dim;
  float* table = vit.pos_embed.data<float>();
  for (int64_t i = 0; i < g; ++i)
    for (int64_t j = 0; j < g; ++j)
      for (int64_t d = 0; d < D; ++d) table[(1 + i * g + j) * D + d] = value(i, j);
}

}  // namespace

TEST_CASE("pos_embed: a non-square input gets its rows from the table's rows", "[vit]") {
  // A table that varies along its rows only: entry (i, j) holds 10 * i.
  const VitConfig cfg = micro_config();
  Rng rng(2);
  VisionTransformer vit(cfg, rng);
  fill_pos_table(vit, [](int64_t i, int64_t) { return float(10 * i); });
  const int64_t D = cfg.embed_dim;

  // 6 x 2 patches (24 x 8 pixels): tokens run row by row, 2 per row. Every token of a row
  // must carry the same value, and the value must rise from each row to the next (4 table rows
  // 10 apart spread over 6: about 5-7 per row). Transposed (a 2 x 6 grid read as 6 x 2), the
  // first three rows would all carry the first table row's value.
  const int64_t rows = 6, cols = 2;
  const Tensor pe = vit.interpolate_pos_encoding(rows * cfg.patch_size, cols * cfg.patch_size);
  REQUIRE(pe.shape() == Shape{1, 1 + rows * cols, D});
  const float* p = pe.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    INFO("patch row " << r);
    CHECK(p[(1 + r * cols + 0) * D] == Approx(p[(1 + r * cols + 1) * D]).margin(1e-4));
    if (r > 0) CHECK(p[(1 + r * cols) * D] > p[(1 + (r - 1) * cols) * D] + 3);
  }
  CHECK(p[(1 + (rows - 1) * cols) * D] > p[1 * D] + 10);

  // And through the model: a non-square image runs.
  Tensor images = Tensor::randn({1, 1, rows * cfg.patch_size, cols * cfg.patch_size}, rng);
  CHECK(vit.forward(images).shape() == Shape{1, D});
}

TEST_CASE("pos_embed: a non-square input gets DINO's interpolate_pos_encoding values", "[vit]") {
  // Entry (i, j) holds 4 i + j^2: it varies along both axes, unevenly, so a transposed grid
  // or swapped scale factors give other values.
  const VitConfig cfg = micro_config();
  Rng rng(3);
  VisionTransformer vit(cfg, rng);
  fill_pos_table(vit, [](int64_t i, int64_t j) { return float(4 * i + j * j); });
  const int64_t D = cfg.embed_dim;

  // facebookresearch/dino's interpolate_pos_encoding for a 24 x 8 image (x.shape[2:] = 24, 8),
  // that is F.interpolate(table (1, 1, 4, 4), scale_factor=(6.1 / 4, 2.1 / 4), mode="bicubic")
  // flattened row by row, as computed by PyTorch:
  const float dino[6][2] = {{-0.15959281f, 5.6818838f}, {1.7582495f, 7.5997257f},
                            {4.9247136f, 10.766190f},   {7.1823502f, 13.023827f},
                            {10.381155f, 16.222630f},   {12.449499f, 18.290970f}};
  const Tensor pe = vit.interpolate_pos_encoding(24, 8);
  REQUIRE(pe.shape() == Shape{1, 1 + 12, D});
  const float* p = pe.data<float>();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 2; ++c)
      for (const int64_t d : {int64_t(0), D - 1}) {
        INFO("patch row " << r << ", column " << c << ", channel " << d);
        CHECK(p[(1 + r * 2 + c) * D + d] == Approx(dino[r][c]).margin(1e-4));
      }
}
