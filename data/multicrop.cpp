#include "data/multicrop.h"

#include <algorithm>

#include "core/error.h"

namespace dino::data {
namespace {

void validate_group(const CropGroup& g, const char* name, int min_count) {
  DINO_CHECK(g.count >= min_count, "[multicrop] ", name, ".count must be at least ", min_count,
             ", got ", g.count);
  DINO_CHECK(g.size > 0, "[multicrop] ", name, ".size must be positive, got ", g.size);
  DINO_CHECK(g.scale_min > 0.f && g.scale_min <= g.scale_max && g.scale_max <= 1.f, "[multicrop] ",
             name, " scale range (", g.scale_min, ", ", g.scale_max,
             ") must satisfy 0 < min <= max <= 1");
}

void check_probability(float p, const char* name) {
  DINO_CHECK(p >= 0.f && p <= 1.f, "[multicrop] ", name, " must be in [0, 1], got ", p);
}

struct ViewRecipe {
  const CropGroup* group;
  float blur_p, solarize_p;
};

ViewParams draw_view(int height, int width, const ViewRecipe& recipe, const MultiCropConfig& cfg,
                     Rng& rng) {
  const CropGroup& g = *recipe.group;
  ViewParams v;
  v.size = g.size;
  v.box = random_resized_crop_box(height, width, g.scale_min, g.scale_max, rng);
  v.flip = rng.bernoulli(cfg.flip_p);
  if (rng.bernoulli(cfg.jitter_p))
    draw_color_jitter({cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue}, rng, v);
  v.grayscale = rng.bernoulli(cfg.grayscale_p);
  if (rng.bernoulli(recipe.blur_p)) {
    const float scale = float(g.size) / 224.f;
    v.blur_sigma = scale * float(rng.uniform(cfg.blur_sigma_min, cfg.blur_sigma_max));
  }
  v.solarize = rng.bernoulli(recipe.solarize_p);
  return v;
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

int view_count(const MultiCropConfig& cfg) { return cfg.global.count + cfg.local.count; }

void draw_views(int height, int width, const MultiCropConfig& cfg, Rng& rng, ViewParams* out) {
  DINO_CHECK(height > 0 && width > 0, "[multicrop] invalid image size ", height, "x", width);
  for (int i = 0; i < cfg.global.count; ++i) {
    const ViewRecipe r{&cfg.global, i == 0 ? cfg.blur_p_global1 : cfg.blur_p_global2,
                       i == 0 ? 0.f : cfg.solarize_p_global2};
    *out++ = draw_view(height, width, r, cfg, rng);
  }
  for (int i = 0; i < cfg.local.count; ++i)
    *out++ = draw_view(height, width, {&cfg.local, cfg.blur_p_local, 0.f}, cfg, rng);
}

std::vector<ViewParams> draw_views(int height, int width, const MultiCropConfig& cfg, Rng& rng) {
  std::vector<ViewParams> views(size_t(view_count(cfg)));
  draw_views(height, width, cfg, rng, views.data());
  return views;
}

namespace {

// Every operation of the view but the normalisation, into scratch.view.
void augment(const Image& img, const ViewParams& p, ViewScratch& scratch) {
  const CropBox& b = p.box;
  Image& view = scratch.view;
  resized_crop(img, b.top, b.left, b.height, b.width, p.size, p.size, view, scratch.resize);
  if (p.flip) hflip(view);
  color_jitter(view, p);
  if (p.grayscale) to_grayscale(view);
  if (p.blur_sigma > 0.f) gaussian_blur(view, p.blur_sigma, scratch.blur);
  if (p.solarize) solarize(view, 0.5f);
}

}  // namespace

void apply_view(const Image& img, const ViewParams& p, const Normalization& norm,
                ViewScratch& scratch, float* out) {
  augment(img, p, scratch);
  normalize(scratch.view, norm, out);
}

void apply_view(const Image& img, const ViewParams& p, ViewScratch& scratch, uint8_t* out) {
  augment(img, p, scratch);
  to_bytes(scratch.view, out);
}

Image apply_view(const Image& img, const ViewParams& p, const Normalization& norm) {
  ViewScratch scratch;
  augment(img, p, scratch);
  Image out = scratch.view;
  normalize(out, norm);
  return out;
}

int max_reduction(const ViewParams* views, int count) {
  int r = 1;
  auto fits = [&](int f) {
    for (int v = 0; v < count; ++v)
      if (views[v].box.height < f * views[v].size || views[v].box.width < f * views[v].size)
        return false;
    return true;
  };
  while (r < 8 && fits(2 * r)) r *= 2;
  return r;
}

void map_to_reduced(ViewParams* views, int count, int full_height, int full_width, int height,
                    int width) {
  auto map = [](int& start, int& extent, int full, int reduced) {
    const int64_t lo = int64_t(start) * reduced / full;
    const int64_t hi =
        std::min<int64_t>((int64_t(start + extent) * reduced + full - 1) / full, reduced);
    start = int(lo);
    extent = int(std::max<int64_t>(hi - lo, 1));
  };
  for (int v = 0; v < count; ++v) {
    map(views[v].box.top, views[v].box.height, full_height, height);
    map(views[v].box.left, views[v].box.width, full_width, width);
  }
}

std::vector<Image> multicrop(const Image& img, const MultiCropConfig& cfg, Rng& rng) {
  validate(cfg);
  DINO_CHECK(img.height > 0 && img.width > 0 &&
                 img.pixels.size() == size_t(img.channels) * img.height * img.width,
             "[multicrop] image shape ", img.channels, "x", img.height, "x", img.width,
             " does not match its ", img.pixels.size(), " pixels");
  const Normalization norm = resolve_normalization(cfg.norm, img.channels);
  std::vector<Image> views;
  for (const ViewParams& p : draw_views(img.height, img.width, cfg, rng))
    views.push_back(apply_view(img, p, norm));
  return views;
}

}  // namespace dino::data
