#pragma once
// The single-image operations of DINO's augmentation pipeline, with torchvision/PIL
// semantics, on CHW float images in [0, 1]. Colour operations on 1-channel images do what
// torchvision does for greyscale tensors: saturation, hue and grayscale leave them alone.
#include <vector>

#include "core/rng.h"
#include "data/augment_params.h"
#include "data/image.h"

namespace dino::data {

struct Normalization {
  std::vector<float> mean, std;  // per channel; empty means the default for the channel count
};
// ImageNet statistics for 3 channels, Fashion-MNIST's (0.2860, 0.3530) for 1.
Normalization default_normalization(int channels);
// Fills in the default when empty and checks sizes and positive std.
Normalization resolve_normalization(const Normalization& norm, int channels);
// (x - mean[c]) / std[c]; `norm` must already be resolved for img.channels.
void normalize(Image& img, const Normalization& norm);
// The same written to `out` (img's layout).
void normalize(const Image& img, const Normalization& norm, float* out);
// Bytes x (0..255, `channels` planes of `plane` values) to (x / 255 - mean[c]) / std[c]: where
// views handed over as bytes are normalised (on the CPU; a device kernel does the same).
void normalize_bytes(const uint8_t* in, int channels, size_t plane, const Normalization& norm,
                     float* out);

// torchvision RandomResizedCrop.get_params: area fraction U(scale_min, scale_max), log-uniform
// aspect ratio, 10 attempts, then a centre crop clamped to the ratio range.
CropBox random_resized_crop_box(int height, int width, float scale_min, float scale_max, Rng& rng,
                                float ratio_min = 3.f / 4.f, float ratio_max = 4.f / 3.f);

float luminance(float r, float g, float b);  // ITU-R 601-2, as PIL's convert("L")
void adjust_brightness(Image& img, float factor);
void adjust_contrast(Image& img, float factor);
void adjust_saturation(Image& img, float factor);
void adjust_hue(Image& img, float shift);  // shift in [-0.5, 0.5] of a full turn
void to_grayscale(Image& img);             // keeps the channel count

struct ColorJitterParams {
  float brightness = 0.4f, contrast = 0.4f, saturation = 0.2f, hue = 0.1f;
};
// torchvision ColorJitter.get_params: a random order, then factors U(1-b, 1+b) etc. and hue
// U(-h, h); a zero strength draws nothing and leaves that operation at its identity.
void draw_color_jitter(const ColorJitterParams& p, Rng& rng, ViewParams& view);
// The view's jitter operations in its order, identities skipped.
void color_jitter(Image& img, const ViewParams& view);

// Separable Gaussian with a kernel of radius ceil(3 sigma), edges replicated.
void gaussian_blur(Image& img, float sigma);
struct BlurScratch {  // gaussian_blur's buffers, reused from one call to the next
  std::vector<float> kernel, padded, tmp, row;
};
void gaussian_blur(Image& img, float sigma, BlurScratch& scratch);
// PIL ImageOps.solarize: x -> 1 - x where x >= threshold.
void solarize(Image& img, float threshold = 0.5f);

// Evaluation transform (k-NN, attention maps): resize the shorter side to size*256/224
// (bicubic), centre-crop size x size, normalise. An image already size x size is only
// normalised.
Image eval_transform(const Image& img, int size, const Normalization& norm);

}  // namespace dino::data
