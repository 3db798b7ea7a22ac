#pragma once
// What is random about one augmented view, as plain data: drawn on the CPU before any pixel
// is read (data/multicrop.h: draw_views), then applied to the source image by the CPU path
// (apply_view, the reference) or by any other implementation of the same operations.
#include <cstdint>

namespace dino::data {

// A region of the source image, in its pixel coordinates.
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

// The colour-jitter operations, numbered as torchvision's ColorJitter numbers them.
enum JitterOp : uint8_t { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

// One view: resized crop -> flip -> colour jitter -> grayscale -> blur -> solarize ->
// normalise, in that order.
struct ViewParams {
  int size = 0;       // output side (views are square)
  CropBox box;        // resampled to size x size (bicubic, PIL's filter)
  bool flip = false;  // horizontal, after the resize
  // The four jitter operations in the drawn order; an operation at its identity factor
  // (brightness, contrast, saturation 1; hue 0) is skipped, so a view without jitter has
  // all four identities.
  uint8_t jitter_order[4] = {kBrightness, kContrast, kSaturation, kHue};
  float brightness = 1.f, contrast = 1.f, saturation = 1.f, hue = 0.f;
  bool grayscale = false;
  float blur_sigma = 0.f;  // Gaussian blur in output pixels (radius ceil(3 sigma)); 0: none
  bool solarize = false;   // x -> 1 - x where x >= 0.5
};

// Where one sample's source image lies in a batch's packed sources (data/augment_gpu.h
// pack_sources), as the GPU's kernels read it: C planes of height x width values
// (channel-planar, as data::SourceImage holds them) starting at byte `offset` (a multiple of 4
// for floats); bytes scaled by 1/255, or floats in [0, 1] when f32.
struct AugmentSource {
  int64_t offset = 0;
  int height = 0, width = 0;
  int f32 = 0;
};

}  // namespace dino::data
