#include "data/multicrop.h"

#include "core/error.h"

namespace dino::data {
namespace {

void validate_group(const CropGroup& g, const char* name, int min_count) {
  DINO_CHECK(g.count >= min_count, "[multicrop] ", name, ".count must be at least ", min_count,
             ", got ", g.count);
  DINO_CHECK(g.size > 0, "[multicrop] ", name, ".size must be positive, got ", g.size);
  DINO_CHECK(g.scale_min > 0.f && g.scale_min <= g.scale_max && g.scale_max <= 1.f,
             "[multicrop] ", name, " scale range (", g.scale_min, ", ", g.scale_max,
             ") must satisfy 0 < min <= max <= 1");
}

void check_probability(float p, const char* name) {
  DINO_CHECK(p >= 0.f && p <= 1.f, "[multicrop] ", name, " must be in [0, 1], got ", p);
}

struct ViewRecipe {
  const CropGroup* group;
  float blur_p, solarize_p;
};

Image augment_view(const Image& img, const ViewRecipe& recipe, const MultiCropConfig& cfg,
                   const Normalization& norm, Rng& rng) {
  const CropGroup& g = *recipe.group;
  const CropBox box = random_resized_crop_box(img.height, img.width, g.scale_min, g.scale_max, rng);
  Image view = resized_crop(img, box.top, box.left, box.height, box.width, g.size, g.size);
  if (rng.bernoulli(cfg.flip_p)) hflip(view);
  if (rng.bernoulli(cfg.jitter_p))
    color_jitter(view, {cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue}, rng);
  if (rng.bernoulli(cfg.grayscale_p)) to_grayscale(view);
  if (rng.bernoulli(recipe.blur_p)) {
    const float scale = float(g.size) / 224.f;
    gaussian_blur(view, scale * float(rng.uniform(cfg.blur_sigma_min, cfg.blur_sigma_max)));
  }
  if (rng.bernoulli(recipe.solarize_p)) solarize(view, 0.5f);
  normalize(view, norm);
  return view;
}

}  // namespace

void validate(const MultiCropConfig& cfg) {
  validate_group(cfg.global, "global", 1);
  validate_group(cfg.local, "local", 0);
  check_probability(cfg.flip_p, "flip_p");
  check_probability(cfg.jitter_p, "jitter_p");
  check_probability(cfg.grayscale_p, "grayscale_p");
  check_probability(cfg.blur_p_global1, "blur_p_global1");
  check_probability(cfg.blur_p_global2, "blur_p_global2");
  check_probability(cfg.blur_p_local, "blur_p_local");
  check_probability(cfg.solarize_p_global2, "solarize_p_global2");
  DINO_CHECK(cfg.brightness >= 0.f && cfg.contrast >= 0.f && cfg.saturation >= 0.f &&
                 cfg.brightness <= 1.f && cfg.contrast <= 1.f && cfg.saturation <= 1.f,
             "[multicrop] brightness, contrast and saturation must be in [0, 1], got ",
             cfg.brightness, ", ", cfg.contrast, ", ", cfg.saturation);
  DINO_CHECK(cfg.hue >= 0.f && cfg.hue <= 0.5f, "[multicrop] hue must be in [0, 0.5], got ",
             cfg.hue);
  DINO_CHECK(cfg.blur_sigma_min > 0.f && cfg.blur_sigma_min <= cfg.blur_sigma_max,
             "[multicrop] blur sigma range (", cfg.blur_sigma_min, ", ", cfg.blur_sigma_max,
             ") must satisfy 0 < min <= max");
}

std::vector<Image> multicrop(const Image& img, const MultiCropConfig& cfg, Rng& rng) {
  validate(cfg);
  DINO_CHECK(img.height > 0 && img.width > 0 &&
                 img.pixels.size() == size_t(img.channels) * img.height * img.width,
             "[multicrop] image shape ", img.channels, "x", img.height, "x", img.width,
             " does not match its ", img.pixels.size(), " pixels");
  const Normalization norm = resolve_normalization(cfg.norm, img.channels);
  std::vector<Image> views;
  views.reserve(size_t(cfg.global.count + cfg.local.count));
  for (int i = 0; i < cfg.global.count; ++i) {
    const ViewRecipe r{&cfg.global, i == 0 ? cfg.blur_p_global1 : cfg.blur_p_global2,
                       i == 0 ? 0.f : cfg.solarize_p_global2};
    views.push_back(augment_view(img, r, cfg, norm, rng));
  }
  for (int i = 0; i < cfg.local.count; ++i)
    views.push_back(augment_view(img, {&cfg.local, cfg.blur_p_local, 0.f}, cfg, norm, rng));
  return views;
}

}  // namespace dino::data
