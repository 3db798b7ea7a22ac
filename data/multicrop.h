#pragma once
// DINO's multi-crop policy (facebookresearch/dino DataAugmentationDINO): global crops, then
// local crops, each through RandomResizedCrop, flip, colour jitter, grayscale, blur, and for
// the second global crop solarisation, then normalisation.
#include <vector>

#include "core/rng.h"
#include "data/augment.h"
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
  // For 224-pixel crops; each crop scales them by its size / 224 (DESIGN §4).
  float blur_sigma_min = 0.1f, blur_sigma_max = 2.0f;
  float solarize_p_global2 = 0.2f;
  Normalization norm;
};

// Throws dino::Error naming the offending field.
void validate(const MultiCropConfig& cfg);

// The views of one image in DINO's order: global crops first, then local crops, each CHW and
// normalised. Global crops after the first follow DINO's second global recipe. All
// randomness comes from `rng`, consumed in a fixed order.
std::vector<Image> multicrop(const Image& img, const MultiCropConfig& cfg, Rng& rng);

}  // namespace dino::data
