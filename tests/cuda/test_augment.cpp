// DINO's augmentations on the GPU (kernels/cuda/augment.cu) against the CPU reference
// (data/multicrop.h: apply_view) for the same drawn parameters: fresh random source bytes of
// odd sizes, 1 and 3 channels, boxes that shrink and boxes that enlarge, every operation on
// its own and all together, jitter orders with contrast first, in the middle and last, and
// the parameters draw_views draws. Outputs are NaN-poisoned before every launch.
//
// Tolerance: the kernels repeat the CPU's arithmetic operation for operation (the same taps in
// the same order, one fused multiply-add chain per output), so what remains is rounding that
// the two compilers place differently: multiply-adds the compiler fuses outside the explicit
// chains (the bicubic polynomial in double, the luminance), CUDA's expf against glibc's for
// the blur weights (up to 2 ulp), and the summation order of contrast's double mean. Each is
// an ulp or so of a value in [0, 1] (6e-8); the chain amplifies it by at most a few (contrast
// factor, the hue conversion's sector arithmetic) and normalising divides by std >= 0.225.
// So a max absolute error of 2e-5 in normalised units leaves a 20x margin over what these
// sources can produce (the emulator, where both sides are compiled by GCC, measures at most
// 8.3e-7, most cases 0), while a wrong tap, order or operation moves values by 1e-3 or more
// (a blur radius one short: 5e-3 to 4e-2).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "data/augment_gpu.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "data/multicrop.h"
#include "kernels/cuda/augment.h"
#include "testing/augment_cases.h"
#include "tests/cuda/test_util.h"

namespace cu = dino::kernels::cuda;
namespace data = dino::data;
using namespace dino::test;

namespace {

constexpr double kTolerance = 2e-5;

struct Source {
  int C, H, W;
  std::vector<uint8_t> bytes;  // CHW
};

Source random_source(dino::Rng& rng, int C, int H, int W) {
  Source s{C, H, W, std::vector<uint8_t>(size_t(C) * H * W)};
  for (uint8_t& b : s.bytes) b = uint8_t(rng.below(256));
  return s;
}

struct Result {
  double max_error = 0.0;
  size_t non_finite = 0;
};

// Views first .. first + V - 1 (all of side S) of every sample on the device, each against
// apply_view on the CPU.
Result render_and_compare(const std::vector<Source>& sources,
                          const std::vector<data::ViewParams>& params, int views_per_sample,
                          int first, int V, int S, int max_box_height = 0) {
  const int B = int(sources.size()), C = sources[0].C;
  const data::Normalization norm = data::default_normalization(C);
  std::vector<uint8_t> bytes;
  std::vector<dino::data::AugmentSource> where;
  for (const Source& s : sources) {
    where.push_back({int64_t(bytes.size()), s.H, s.W, 0});
    bytes.insert(bytes.end(), s.bytes.begin(), s.bytes.end());
  }
  if (max_box_height == 0)
    for (int b = 0; b < B; ++b)
      for (int v = first; v < first + V; ++v)
        max_box_height =
            std::max(max_box_height, params[size_t(b) * views_per_sample + v].box.height);

  DeviceBuffer<uint8_t> d_bytes(bytes);
  DeviceBuffer<uint8_t> d_where(where.size() * sizeof(dino::data::AugmentSource));
  DeviceBuffer<uint8_t> d_params(params.size() * sizeof(data::ViewParams));
  cu::copy_h2d(d_where.get(), where.data(), d_where.size());
  cu::copy_h2d(d_params.get(), params.data(), d_params.size());
  const size_t per_view = size_t(C) * S * S;
  DeviceBuffer<float> out(size_t(V) * B * per_view);
  out.poison();
  cu::augment_views(
      out.get(), d_bytes.get(), reinterpret_cast<const dino::data::AugmentSource*>(d_where.get()),
      reinterpret_cast<const data::ViewParams*>(d_params.get()), B, views_per_sample, first, V, C,
      S, max_box_height, norm.mean.data(), norm.std.data(), test_stream());
  const std::vector<float> got = out.download();

  Result r;
  for (int v = 0; v < V; ++v)
    for (int b = 0; b < B; ++b) {
      const Source& s = sources[size_t(b)];
      const data::Image img = data::image_from_u8(s.bytes.data(), s.C, s.H, s.W);
      const data::Image ref =
          data::apply_view(img, params[size_t(b) * views_per_sample + first + v], norm);
      const float* g = got.data() + (size_t(v) * B + b) * per_view;
      for (size_t i = 0; i < per_view; ++i) {
        if (!std::isfinite(g[i])) {
          ++r.non_finite;
          continue;
        }
        r.max_error = std::max(r.max_error, std::fabs(double(g[i]) - double(ref.pixels[i])));
      }
    }
  return r;
}

void expect_match(const Result& r) {
  INFO("max abs error " << r.max_error << " (tolerance " << kTolerance << "), " << r.non_finite
                        << " non-finite values");
  CHECK(r.non_finite == 0);
  CHECK(r.max_error <= kTolerance);
}

// One view of side S whose box is (top, left, h, w), no operation but the crop.
data::ViewParams plain_view(int S, int top, int left, int h, int w) {
  data::ViewParams p;
  p.size = S;
  p.box = {top, left, h, w};
  return p;
}

// A source batch as the loader hands it over: 8-bit sources, or with `mixed` a float one
// between them; `images` gets the sources as the CPU path reads them.
data::SourceBatch source_batch(dino::Rng& rng, const data::MultiCropConfig& cfg, int C, bool mixed,
                               std::vector<data::Image>& images) {
  const int sizes[][2] = {{33, 27}, {41, 52}, {29, 29}};
  data::SourceBatch sb;
  sb.batch = 3;
  sb.channels = C;
  sb.view_sizes.assign(size_t(cfg.global.count), cfg.global.size);
  sb.view_sizes.insert(sb.view_sizes.end(), size_t(cfg.local.count), cfg.local.size);
  sb.samples.resize(3);
  images.clear();
  for (int b = 0; b < 3; ++b) {
    const int H = sizes[b][0], W = sizes[b][1];
    const Source s = random_source(rng, C, H, W);
    data::SourceImage src;
    src.channels = C;
    src.height = src.full_height = H;
    src.width = src.full_width = W;
    // The middle sample stored as floats between the byte levels (a procedural dataset's).
    src.is_u8 = b != 1 || !mixed;
    if (src.is_u8) {
      src.u8 = s.bytes;
      images.push_back(data::image_from_u8(s.bytes.data(), C, H, W));
    } else {
      src.f32 = data::make_image(C, H, W);
      for (float& x : src.f32.pixels) x = float(rng.uniform(0.0, 1.0));
      images.push_back(src.f32);
    }
    sb.set_source(b, src);
    const std::vector<data::ViewParams> v = data::draw_views(H, W, cfg, rng);
    sb.params.insert(sb.params.end(), v.begin(), v.end());
  }
  return sb;
}

}  // namespace

TEST_CASE("augment_views matches apply_view for the views draw_views draws", "[augment]") {
  dino::Rng rng(141);
  // Every checked batch of the augmentation's case table (testing/augment_cases.h), which
  // `dino bench augment` reads too.
  const auto cases = dino::testing::checked_augment_cases();
  REQUIRE(cases.size() >= 3);
  for (const dino::testing::AugmentCase* k : cases) {
    INFO(k->label << ", C = " << k->channels);
    const int C = k->channels;
    data::MultiCropConfig cfg;
    cfg.global = {2, k->global_size, 0.4f, 1.f};
    cfg.local = {k->local_crops, k->local_size, 0.05f, 0.4f};
    cfg.grayscale_p = 0.3f;
    cfg.solarize_p_global2 = 0.5f;
    // sigma up to 40 x size / 224: at 21 pixels radii up to 12, past the views' edges.
    cfg.blur_sigma_max = 40.f;
    std::vector<Source> sources;
    for (const auto& [H, W] : k->sources) sources.push_back(random_source(rng, C, H, W));
    std::vector<data::ViewParams> params;
    for (const Source& s : sources) {
      const std::vector<data::ViewParams> v = data::draw_views(s.H, s.W, cfg, rng);
      params.insert(params.end(), v.begin(), v.end());
    }
    const int views = data::view_count(cfg);
    expect_match(render_and_compare(sources, params, views, 0, cfg.global.count, cfg.global.size));
    expect_match(render_and_compare(sources, params, views, cfg.global.count, cfg.local.count,
                                    cfg.local.size));
  }
}

TEST_CASE("augment_views matches apply_view with each operation on its own and all together",
          "[augment]") {
  dino::Rng rng(142);
  for (int C : {3, 1}) {
    const std::vector<Source> sources = {random_source(rng, C, 31, 45),
                                         random_source(rng, C, 19, 23)};
    // Box (2, 3, 15, 17), inside both sources: 15 -> 13 rows and 17 -> 13 columns shrink.
    const data::ViewParams base = plain_view(13, 2, 3, 15, 17);
    std::vector<data::ViewParams> cases;
    cases.push_back(base);
    cases.push_back(plain_view(13, 1, 0, 7, 5));    // enlarging on both axes
    cases.push_back(plain_view(13, 0, 0, 19, 23));  // the whole second source
    auto with = [&](auto edit) {
      data::ViewParams p = base;
      edit(p);
      cases.push_back(p);
    };
    with([](data::ViewParams& p) { p.flip = true; });
    with([](data::ViewParams& p) { p.brightness = 1.37f; });
    with([](data::ViewParams& p) { p.brightness = 0.61f; });
    with([](data::ViewParams& p) { p.contrast = 0.66f; });
    with([](data::ViewParams& p) { p.contrast = 1.4f; });
    with([](data::ViewParams& p) { p.saturation = 0.81f; });
    with([](data::ViewParams& p) { p.saturation = 1.19f; });
    with([](data::ViewParams& p) { p.hue = 0.09f; });
    with([](data::ViewParams& p) { p.hue = -0.5f; });
    with([](data::ViewParams& p) { p.grayscale = true; });
    with([](data::ViewParams& p) { p.blur_sigma = 0.31f; });
    with([](data::ViewParams& p) { p.blur_sigma = 1.7f; });
    with([](data::ViewParams& p) { p.blur_sigma = 6.f; });  // radius 18 > the view
    with([](data::ViewParams& p) { p.solarize = true; });
    // Every operation, contrast first, in the middle and last of the jitter order.
    const uint8_t orders[3][4] = {
        {data::kContrast, data::kHue, data::kBrightness, data::kSaturation},
        {data::kHue, data::kSaturation, data::kContrast, data::kBrightness},
        {data::kSaturation, data::kBrightness, data::kHue, data::kContrast}};
    for (const auto& order : orders)
      with([&](data::ViewParams& p) {
        std::copy(order, order + 4, p.jitter_order);
        p.flip = true;
        p.brightness = 1.21f;
        p.contrast = 0.73f;
        p.saturation = 1.33f;
        p.hue = -0.07f;
        p.grayscale = C == 1;  // grayscale after jitter would hide the saturation and hue
        p.blur_sigma = 0.9f;
        p.solarize = true;
      });
    // Each case as the only view of both samples (the same parameters for both).
    for (size_t k = 0; k < cases.size(); ++k) {
      INFO("C = " << C << ", case " << k);
      expect_match(render_and_compare(sources, {cases[k], cases[k]}, 1, 0, 1, 13));
    }
  }
}

TEST_CASE("augment_views writes NaN for a view whose box is taller than the stated bound",
          "[augment]") {
  dino::Rng rng(143);
  const std::vector<Source> sources = {random_source(rng, 3, 20, 20)};
  const std::vector<data::ViewParams> params = {plain_view(7, 0, 0, 20, 20)};
  const Result r = render_and_compare(sources, params, 1, 0, 1, 7, /*max_box_height=*/10);
  CHECK(r.non_finite == size_t(3 * 7 * 7));
}

TEST_CASE("render_views_cuda renders a source batch as the step's view tensors", "[augment]") {
  dino::Rng rng(144);
  data::MultiCropConfig cfg;
  cfg.global = {2, 17, 0.4f, 1.f};
  cfg.local = {3, 7, 0.05f, 0.4f};
  const int views = data::view_count(cfg);
  for (int C : {3, 1})
    for (bool mixed : {false, true}) {
      INFO("C = " << C << (mixed ? ", a float source among 8-bit ones" : ", 8-bit sources"));
      const data::Normalization norm = data::resolve_normalization(cfg.norm, C);
      std::vector<data::Image> images;
      const data::SourceBatch sb = source_batch(rng, cfg, C, mixed, images);
      dino::kernels::cuda::set_poison_allocations(true);
      const std::vector<dino::Tensor> got = data::render_views_cuda(sb, norm);
      dino::kernels::cuda::set_poison_allocations(false);
      REQUIRE(got.size() == size_t(views));
      double max_error = 0.0;
      size_t non_finite = 0;
      for (int v = 0; v < views; ++v) {
        const int S = sb.view_sizes[size_t(v)];
        REQUIRE(got[size_t(v)].shape() == dino::Shape{sb.batch, C, S, S});
        const std::vector<float> g = got[size_t(v)].to_vector();
        for (int b = 0; b < sb.batch; ++b) {
          const data::Image ref =
              data::apply_view(images[size_t(b)], sb.params[size_t(b) * views + v], norm);
          for (size_t i = 0; i < ref.pixels.size(); ++i) {
            const float x = g[size_t(b) * ref.pixels.size() + i];
            if (!std::isfinite(x))
              ++non_finite;
            else
              max_error = std::max(max_error, std::fabs(double(x) - double(ref.pixels[i])));
          }
        }
      }
      INFO("max abs error " << max_error << ", " << non_finite << " non-finite values");
      CHECK(non_finite == 0);
      CHECK(max_error <= kTolerance);
    }
}

TEST_CASE("render_views_cuda refuses a malformed batch, naming the sample", "[augment]") {
  dino::Rng rng(145);
  data::MultiCropConfig cfg;
  cfg.global = {2, 17, 0.4f, 1.f};
  cfg.local = {3, 7, 0.05f, 0.4f};
  const int views = data::view_count(cfg);
  const data::Normalization norm = data::resolve_normalization(cfg.norm, 3);
  std::vector<data::Image> images;
  const data::SourceBatch sb = source_batch(rng, cfg, 3, false, images);
  data::SourceBatch bad = sb;
  bad.params[4].box.left = sb.samples[0].width - bad.params[4].box.width + 1;
  CHECK_THROWS_WITH(
      data::render_views_cuda(bad, norm),
      Catch::Contains("view 4 of sample 0") && Catch::Contains("outside its 33x27 source"));
  bad = sb;
  bad.params[size_t(views) + 1].size = 9;
  CHECK_THROWS_WITH(data::render_views_cuda(bad, norm),
                    Catch::Contains("view 1 of sample 1 has side 9"));
  bad = sb;
  bad.samples[2].bytes.pop_back();
  CHECK_THROWS_WITH(data::render_views_cuda(bad, norm),
                    Catch::Contains("sample 2 holds 2522 bytes"));
}

TEST_CASE("the loader's sources rendered on the GPU equal its f32 views", "[augment]") {
  // The same (seed, epoch, index) stream through both formats: the sources format must hand
  // over exactly what the f32 format augments on the CPU.
  data::SyntheticConfig sc;
  sc.n = 12;
  sc.size = 37;
  sc.channels = 3;
  const auto ds = data::open_synthetic(sc, data::Split::train);
  data::MultiCropConfig cfg;
  cfg.global = {2, 19, 0.4f, 1.f};
  cfg.local = {2, 9, 0.05f, 0.4f};
  data::LoaderOptions f32_opt, src_opt;
  f32_opt.threads = src_opt.threads = 2;
  src_opt.format = data::CropFormat::sources;
  data::MultiCropLoader cpu(*ds, cfg, 4, 7, f32_opt), gpu(*ds, cfg, 4, 7, src_opt);
  cpu.start(1, 1);
  gpu.start(1, 1);
  for (int step = 0; step < 2; ++step) {
    const auto want = cpu.next();
    const auto got = gpu.next();
    REQUIRE(got->indices == want->indices);
    CHECK_THROWS_WITH(got->view_f32(0), Catch::Contains("holds sources"));
    const std::vector<dino::Tensor> views = data::render_views_cuda(got->sources, got->norm);
    REQUIRE(views.size() == want->views.size());
    for (size_t v = 0; v < views.size(); ++v) {
      INFO("batch " << step << ", view " << v);
      const std::vector<float> g = views[v].to_vector();
      const float* ref = want->view_f32(v);
      REQUIRE(g.size() == want->view_values(v));
      double max_error = 0.0;
      size_t non_finite = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        if (!std::isfinite(g[i]))
          ++non_finite;
        else
          max_error = std::max(max_error, std::fabs(double(g[i]) - double(ref[i])));
      }
      INFO("max abs error " << max_error);
      CHECK(non_finite == 0);
      CHECK(max_error <= kTolerance);
    }
  }
}
