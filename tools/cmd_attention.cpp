// `dino attention`: the [CLS] attention of the teacher's last block, one panel per head, as
// facebookresearch/dino's visualize_attention.py computes it: attn[0, :, 0, 1:] reshaped to
// the patch grid and upsampled x patch (nearest). With --threshold, DINO's masks: per head
// the smallest set of patches that holds that fraction of the attention mass.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "core/atomic_file.h"
#include "core/autograd.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

namespace dino::tools {

namespace {

constexpr int kMinPanel = 96;  // pixels: a 28-pixel image panel is too small to read
constexpr int kGap = 4;
constexpr uint8_t kBackground = 32;

// Five stops of matplotlib's viridis, interpolated linearly.
std::array<uint8_t, 3> viridis(float t) {
  static const float stops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.f, 1.f) * 4.f;
  const int i = std::min(3, int(t));
  const float f = t - float(i);
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c)
    rgb[c] = uint8_t(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])));
  return rgb;
}

// visualize_attention.py's --threshold: sort ascending, normalise, cumulative sum, keep the
// patches whose cumulative mass exceeds 1 - threshold (the largest ones).
std::vector<bool> threshold_mask(const std::vector<float>& attn, double threshold) {
  std::vector<size_t> order(attn.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return attn[a] < attn[b]; });
  double total = 0;
  for (float v : attn) total += v;
  std::vector<bool> keep(attn.size(), false);
  double cum = 0;
  for (size_t i : order) {
    cum += attn[i] / total;
    keep[i] = cum > 1.0 - threshold;
  }
  return keep;
}

struct Canvas {
  int width, height;
  std::vector<uint8_t> rgb;
  Canvas(int w, int h) : width(w), height(h), rgb(size_t(w) * h * 3, kBackground) {}
  uint8_t* at(int x, int y) { return rgb.data() + (size_t(y) * width + x) * 3; }
};

// The image's colour at display pixel (x, y) of a panel upscaled by `up`.
std::array<float, 3> image_rgb(const data::Image& img, int x, int y, int up) {
  std::array<float, 3> c{};
  for (int k = 0; k < 3; ++k)
    c[k] = std::clamp(img.at(img.channels == 3 ? k : 0, y / up, x / up), 0.f, 1.f) * 255.f;
  return c;
}

void write_png_atomically(const std::string& path, const Canvas& canvas) {
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  DINO_CHECK(stbi_write_png_to_func(append, &png, canvas.width, canvas.height, 3,
                                    canvas.rgb.data(), canvas.width * 3),
             "[attention] cannot encode the PNG for ", path);
  write_file_atomically(path, png);
}

}  // namespace

void add_attention_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, image, data, out;
    int64_t index = -1, size = 0;
    double threshold = 0.6;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "attention", "PNG of the teacher's last-block [CLS] attention, one panel per head "
                   "(visualize_attention.py)");
  cmd->add_option("--checkpoint", args->checkpoint, "Training checkpoint (.safetensors) written by `dino train`")
      ->required();
  auto* image = cmd->add_option("--image", args->image, "Image file to look at (PNG, JPEG or BMP)");
  auto* index = cmd->add_option("--index", args->index, "Or: index of an image in the test split of --data");
  image->excludes(index);
  cmd->add_option("--data", args->data, "Dataset spec for --index (default: the checkpoint's data.dataset)");
  cmd->add_option("--out", args->out, "Output PNG (written to OUT.tmp, then renamed)")->required();
  cmd->add_option("--threshold", args->threshold,
                  "Also draw masks keeping this fraction of each head's attention mass (0: no masks)")
      ->capture_default_str();
  cmd->add_option("--size", args->size, "Input side in pixels, rounded down to a multiple of the "
                  "patch (default: the model's img_size)");
  cmd->add_flag("--json", args->json, "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args, cmd_index = index] {
    DINO_CHECK(!args->image.empty() || cmd_index->count() > 0, "[attention] give --image PATH or --index N");
    DINO_CHECK(args->threshold >= 0 && args->threshold <= 1, "[attention] --threshold must be in [0, 1], got ",
               args->threshold);
    DINO_CHECK(args->size >= 0, "[attention] --size must not be negative, got ", args->size);
    check_output_file("attention", args->out, {args->checkpoint, args->image});
    const Backbone b = load_backbone(args->checkpoint);
    const auto& vit = b.model;
    const int64_t P = vit->config().patch_size, C = vit->config().in_chans;
    const int64_t S = (args->size > 0 ? args->size : vit->config().img_size) / P * P;
    DINO_CHECK(S >= P, "[attention] --size ", args->size, " is smaller than the patch (", P, ")");

    data::Image raw;
    nlohmann::json source;
    if (!args->image.empty()) {
      raw = data::read_image_file(args->image, int(C));
      source = {{"image", args->image}};
    } else {
      DINO_CHECK(!args->data.empty() || b.from_training_checkpoint, "[attention] ", args->checkpoint,
                 " is a backbone file, which names no dataset: give --data with --index");
      const std::string spec = args->data.empty()
                                   ? b.recipe.data.dataset
                                   : args->data;
      const auto ds = data::open_dataset(spec, data::Split::test);
      DINO_CHECK(args->index >= 0 && size_t(args->index) < ds->size(), "[attention] --index ", args->index,
                 " is outside the ", ds->size(), " images of ", ds->describe());
      DINO_CHECK(ds->channels() == C, "[attention] ", ds->describe(), " has ", ds->channels(),
                 " channels, the model expects ", C);
      raw = ds->get(size_t(args->index));
      source = {{"dataset", ds->describe()}, {"index", args->index}, {"label", ds->label(size_t(args->index))}};
    }
    // The crop as shown (values in [0, 1]) and as the model sees it (normalised).
    const data::Image shown = data::eval_transform(
        raw, int(S), {std::vector<float>(size_t(C), 0.f), std::vector<float>(size_t(C), 1.f)});
    data::Image input = shown;
    data::normalize(input, b.norm);

    Tensor probs;
    {
      NoGradGuard no_grad;
      probs = vit->last_self_attention(Tensor::from_vector(input.pixels, {1, C, S, S}));
    }
    const int64_t H = probs.size(1), T = probs.size(2), g = S / P;
    const std::vector<float> all = probs.to_vector();
    for (float p : all)
      DINO_CHECK(std::isfinite(p), "[attention] the attention of ", b.path,
                 " on this image is not finite (NaN or infinity); no map is drawn");
    std::vector<std::vector<float>> attn(static_cast<size_t>(H));  // attn[0, h, 0, 1:]
    for (int64_t h = 0; h < H; ++h)
      attn[size_t(h)].assign(all.begin() + h * T * T + 1, all.begin() + h * T * T + T);

    const int up = std::max(1, (kMinPanel + int(S) - 1) / int(S)), panel = int(S) * up;
    const bool masks = args->threshold > 0;
    const int cols = int(H) + 1, rows = masks ? 2 : 1;
    Canvas canvas(cols * panel + (cols + 1) * kGap, rows * panel + (rows + 1) * kGap);
    auto origin = [&](int col, int row) { return std::pair<int, int>{kGap + col * (panel + kGap), kGap + row * (panel + kGap)}; };

    auto [x0, y0] = origin(0, 0);
    for (int y = 0; y < panel; ++y)
      for (int x = 0; x < panel; ++x) {
        const auto c = image_rgb(shown, x, y, up);
        for (int k = 0; k < 3; ++k) canvas.at(x0 + x, y0 + y)[k] = uint8_t(std::lround(c[k]));
      }
    nlohmann::json kept = nlohmann::json::array();
    for (int64_t h = 0; h < H; ++h) {
      const std::vector<float>& a = attn[size_t(h)];
      const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
      const float range = std::max(*hi - *lo, 1e-12f);
      const std::vector<bool> keep = masks ? threshold_mask(a, args->threshold) : std::vector<bool>();
      if (masks) kept.push_back(std::count(keep.begin(), keep.end(), true));
      for (int y = 0; y < panel; ++y)
        for (int x = 0; x < panel; ++x) {
          const size_t patch = size_t(y / up / P * g + x / up / P);
          auto [hx, hy] = origin(int(h) + 1, 0);
          const auto rgb = viridis((a[patch] - *lo) / range);
          std::copy(rgb.begin(), rgb.end(), canvas.at(hx + x, hy + y));
          if (!masks) continue;
          // Mask row: the image, lit and tinted inside the mask, dimmed outside it.
          auto [mx, my] = origin(int(h) + 1, 1);
          const auto c = image_rgb(shown, x, y, up);
          const std::array<float, 3> tint{255.f, 170.f, 0.f};
          for (int k = 0; k < 3; ++k)
            canvas.at(mx + x, my + y)[k] = uint8_t(std::lround(keep[patch] ? 0.6f * c[k] + 0.4f * tint[k] : 0.3f * c[k]));
        }
    }
    write_png_atomically(args->out, canvas);

    std::printf("wrote %s: %d x %d px, input %ld px, %ld heads over a %ld x %ld patch grid%s\n",
                args->out.c_str(), canvas.width, canvas.height, long(S), long(H), long(g), long(g),
                masks ? ", second row: threshold masks" : "");
    if (args->json) {
      nlohmann::json out = {{"out", args->out}, {"width", canvas.width}, {"height", canvas.height},
                            {"size", S}, {"patch", P}, {"grid", g}, {"heads", H},
                            {"threshold", args->threshold}, {"source", source}};
      if (masks) out["kept_patches"] = kept;
      std::cout << out.dump() << std::endl;
    }
  });
}

}  // namespace dino::tools
