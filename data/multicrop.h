#pragma once
// DINO's multi-crop policy (facebookresearch/dino DataAugmentationDINO): global crops, then
// local crops, each through RandomResizedCrop, flip, colour jitter, grayscale, blur, and for
// the second global crop solarisation, then normalisation.
#include <vector>

#include "core/rng.h"
#include "data/augment.h"
#include "data/augment_params.h"
#include "data/image.h"

namespace dino::data {

struct CropGroup {
  int count;
  int size;
  float scale_min, scale_max;
};

struct MultiCropConfig {
  CropGroup global{2, 224, 0.4f, 1.0f};
  CropGroup local{8, 96, 0.05f, 0.4f};
  float flip_p = 0.5f;
  float jitter_p = 0.8f, brightness = 0.4f, contrast = 0.4f, saturation = 0.2f, hue = 0.1f;
  float grayscale_p = 0.2f;
  float blur_p_global1 = 1.0f, blur_p_global2 = 0.1f, blur_p_local = 0.5f;
  // For 224-pixel crops; each crop scales them by its size / 224 (ARCHITECTURE §4).
  float blur_sigma_min = 0.1f, blur_sigma_max = 2.0f;
  float solarize_p_global2 = 0.2f;
  Normalization norm;
};

// Throws dino::Error naming the offending field.
void validate(const MultiCropConfig& cfg);

int view_count(const MultiCropConfig& cfg);  // global + local

// Draws the parameters of every view of one height x width image, in DINO's order: global
// crops first (the first with DINO's first global recipe, the others with its second), then
// local crops. Per view the draws are: crop box, flip, jitter (order then factors), grayscale,
// blur sigma, solarize. Only the image size is read, so parameters can be drawn before the
// image is decoded. `out` holds view_count(cfg) entries.
void draw_views(int height, int width, const MultiCropConfig& cfg, Rng& rng, ViewParams* out);
std::vector<ViewParams> draw_views(int height, int width, const MultiCropConfig& cfg, Rng& rng);

// One view of `img` (CHW in [0, 1]): its parameters applied in ViewParams' order, then
// normalised with `norm` (resolved for img.channels).
Image apply_view(const Image& img, const ViewParams& view, const Normalization& norm);

// The buffers apply_view needs, reused from one view to the next.
struct ViewScratch {
  Image view;
  ResizeScratch resize;
  BlurScratch blur;
};
// apply_view into `out` (C x size x size): normalised floats, or bytes round(255 x) of the
// view before normalisation (normalize_bytes then gives the same floats to within the byte
// rounding). Allocates nothing once the scratch has grown.
void apply_view(const Image& img, const ViewParams& view, const Normalization& norm,
                ViewScratch& scratch, float* out);
void apply_view(const Image& img, const ViewParams& view, ViewScratch& scratch, uint8_t* out);

// The largest factor (1, 2, 4 or 8) by which the source can be shrunk before cropping with
// every view still resampled down (or 1:1), never up: each box at least r x its size.
int max_reduction(const ViewParams* views, int count);
// Maps the views' boxes from the stored full_height x full_width to a reduced decode of
// height x width; each box grows to the reduced pixels it touches.
void map_to_reduced(ViewParams* views, int count, int full_height, int full_width, int height,
                    int width);

// draw_views then apply_view on every view: each CHW and normalised.
std::vector<Image> multicrop(const Image& img, const MultiCropConfig& cfg, Rng& rng);

}  // namespace dino::data
