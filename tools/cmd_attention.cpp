// `dino attention`: the [CLS] attention of the teacher's last block, one panel per head, as
// facebookresearch/dino's visualize_attention.py computes it: attn[0, :, 0, 1:] reshaped to
// the patch grid and upsampled x patch (nearest). With --threshold, DINO's masks: per head
// the smallest set of patches that holds that fraction of the attention mass. The picture is
// labelled (heads, threshold, the image's class); --per-head DIR also writes the files
// visualize_attention.py writes (img.png, attn-head<j>.png, mask_th<t>_head<j>.png).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "core/autograd.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/picture.h"

namespace dino::tools {

namespace {

constexpr int kMinPanel = 128;  // pixels: a 28-pixel image panel is too small to read
constexpr int kGap = 6;
constexpr Rgb kBackground{32, 32, 32}, kLabel{235, 235, 235};

// Five stops of matplotlib's viridis, interpolated linearly.
Rgb viridis(float t) {
  static const float stops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.f, 1.f) * 4.f;
  const int i = std::min(3, int(t));
  const float f = t - float(i);
  Rgb rgb{};
  for (int c = 0; c < 3; ++c)
    rgb[c] = uint8_t(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])));
  return rgb;
}

// visualize_attention.py's --threshold: sort ascending, normalise, cumulative sum, keep the
// patches whose cumulative mass exceeds 1 - threshold (the largest ones).
std::vector<bool> threshold_mask(const std::vector<float>& attn, double threshold) {
  std::vector<size_t> order(attn.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return attn[a] < attn[b]; });
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

// The image's colour at display pixel (x, y) of a panel upscaled by `up`.
std::array<float, 3> image_rgb(const data::Image& img, int x, int y, int up) {
  std::array<float, 3> c{};
  for (int k = 0; k < 3; ++k)
    c[k] = std::clamp(img.at(img.channels == 3 ? k : 0, y / up, x / up), 0.f, 1.f) * 255.f;
  return c;
}

// Attention values as viridis, min-max normalised (what plt.imsave does with its defaults).
Rgb attention_rgb(const std::vector<float>& a, size_t patch) {
  const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
  return viridis((a[patch] - *lo) / std::max(*hi - *lo, 1e-12f));
}

// The image at display pixel (x, y), lit and tinted inside the mask, dimmed outside it.
Rgb masked_rgb(const data::Image& img, int x, int y, int up, bool inside) {
  const auto c = image_rgb(img, x, y, up);
  const std::array<float, 3> tint{255.f, 170.f, 0.f};
  Rgb out{};
  for (int k = 0; k < 3; ++k)
    out[k] = uint8_t(std::lround(inside ? 0.6f * c[k] + 0.4f * tint[k] : 0.3f * c[k]));
  return out;
}

}  // namespace

void add_attention_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, image, data, out, per_head;
    int64_t index = -1, size = 0;
    double threshold = 0.6;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      app.add_subcommand("attention",
                         "PNG of the teacher's last-block [CLS] attention, one panel per head "
                         "(visualize_attention.py)");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Training checkpoint written by `dino train` "
                  "(its teacher), or a backbone file from `dino export` / `dino import`")
      ->required();
  auto* image = cmd->add_option("--image", args->image, "Image file to look at (PNG, JPEG or BMP)");
  auto* index =
      cmd->add_option("--index", args->index, "Or: index of an image in the test split of --data");
  image->excludes(index);
  cmd->add_option("--data", args->data,
                  "Dataset spec for --index (default: the checkpoint's data.dataset)");
  cmd->add_option("--out", args->out, "Output PNG (written to OUT.tmp, then renamed)")->required();
  cmd->add_option(
         "--threshold", args->threshold,
         "Also draw masks keeping this fraction of each head's attention mass (0: no masks)")
      ->capture_default_str();
  cmd->add_option("--size", args->size,
                  "Input side in pixels, rounded down to a multiple of the "
                  "patch (default: the model's img_size)");
  cmd->add_option("--per-head", args->per_head,
                  "Also write visualize_attention.py's files into this "
                  "folder: img.png, attn-head<j>.png, and with --threshold mask_th<t>_head<j>.png");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args, cmd_index = index] {
    DINO_CHECK(!args->image.empty() || cmd_index->count() > 0,
               "[attention] give --image PATH or --index N");
    DINO_CHECK(args->threshold >= 0 && args->threshold <= 1,
               "[attention] --threshold must be in [0, 1], got ", args->threshold);
    DINO_CHECK(args->size >= 0, "[attention] --size must not be negative, got ", args->size);
    check_output_file("attention", args->out, {args->checkpoint, args->image});
    const Backbone b = load_backbone(args->checkpoint);
    const auto& vit = b.model;
    const int64_t P = vit->config().patch_size, C = vit->config().in_chans;
    const int64_t S = (args->size > 0 ? args->size : vit->config().img_size) / P * P;
    DINO_CHECK(S >= P, "[attention] --size ", args->size, " is smaller than the patch (", P, ")");

    data::Image raw;
    nlohmann::json source;
    std::string label_text;  // "Sneaker (label 7), test image 0 of fashion-mnist; "
    if (!args->image.empty()) {
      raw = data::read_image_file(args->image, int(C));
      source = {{"image", args->image}};
      label_text = args->image + "; ";
    } else {
      DINO_CHECK(!args->data.empty() || b.from_training_checkpoint, "[attention] ",
                 args->checkpoint,
                 " is a backbone file, which names no dataset: give --data with --index");
      const std::string spec = args->data.empty() ? b.recipe.data.dataset : args->data;
      const auto ds = data::open_dataset(spec, data::Split::test);
      DINO_CHECK(args->index >= 0 && size_t(args->index) < ds->size(), "[attention] --index ",
                 args->index, " is outside the ", ds->size(), " images of ", ds->describe());
      DINO_CHECK(ds->channels() == C, "[attention] ", ds->describe(), " has ", ds->channels(),
                 " channels, the model expects ", C);
      raw = ds->get(size_t(args->index));
      const int label = ds->label(size_t(args->index));
      source = {{"dataset", ds->describe()}, {"index", args->index}, {"label", label}};
      if (label >= 0) source["class"] = ds->class_name(label);
      const std::string name = label >= 0 ? ds->class_name(label) : "";
      label_text =
          str_cat(label < 0                          ? std::string()
                  : name == str_cat("class ", label) ? str_cat("label ", label, ", ")
                                                     : str_cat(name, " (label ", label, "), "),
                  "test image ", args->index, " of ", spec, "; ");
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

    for (const auto& a : attn)
      for (float v : a)
        DINO_CHECK(std::isfinite(v),
                   "[attention] the model's attention is not finite: the weights in ",
                   args->checkpoint, " are damaged");

    // Panels of the image, then one per head; a second row of masks with --threshold. Above
    // them: what the picture shows; over each column: its name.
    const int up = std::max(1, (kMinPanel + int(S) - 1) / int(S)), panel = int(S) * up;
    const bool masks = args->threshold > 0;
    const int cols = int(H) + 1, rows = masks ? 2 : 1;
    const int title_h = Canvas::text_height() + 8;
    const std::string what = str_cat("teacher [CLS] attention, last block: ", args->checkpoint,
                                     b.step >= 0 ? str_cat(" (step ", b.step, ")") : "");
    const std::string input_line =
        str_cat(label_text, "input ", S, " px, ", g, " x ", g, " patches of ", P, " px");
    const int header = 2 * title_h + 6;
    const int width =
        std::max(cols * panel + (cols + 1) * kGap,
                 std::max(Canvas::text_width(what), Canvas::text_width(input_line)) + 2 * kGap);
    Canvas canvas(width, header + rows * (panel + title_h) + kGap, kBackground);
    canvas.text(kGap, 6, what, kLabel);
    canvas.text(kGap, 6 + title_h, input_line, kLabel);
    auto origin = [&](int col, int row) {
      return std::pair<int, int>{kGap + col * (panel + kGap),
                                 header + row * (panel + title_h) + title_h};
    };
    auto column_title = [&](int col, int row, const std::string& t) {
      const auto [x, y] = origin(col, row);
      canvas.text(x + (panel - Canvas::text_width(t)) / 2.0, y - title_h + 2, t, kLabel);
    };

    {
      const auto [x0, y0] = origin(0, 0);
      column_title(0, 0, "image");
      for (int y = 0; y < panel; ++y)
        for (int x = 0; x < panel; ++x) {
          const auto c = image_rgb(shown, x, y, up);
          for (int k = 0; k < 3; ++k) canvas.at(x0 + x, y0 + y)[k] = uint8_t(std::lround(c[k]));
        }
    }
    const std::string th = str_cat(args->threshold);  // "0.6", as DINO names its files
    if (masks) {
      const auto [x0, y0] = origin(0, 1);
      const std::string lines[] = {"masks:", "top patches",
                                   str_cat("holding ", std::lround(args->threshold * 100), "%"),
                                   "of the", "attention"};
      for (size_t i = 0; i < 5; ++i)
        canvas.text(x0 + 4, y0 + 4 + double(i) * (Canvas::text_height() + 6), lines[i], kLabel);
    }
    nlohmann::json kept = nlohmann::json::array();
    std::vector<std::vector<bool>> keeps;
    for (int64_t h = 0; h < H; ++h) {
      const std::vector<float>& a = attn[size_t(h)];
      keeps.push_back(masks ? threshold_mask(a, args->threshold) : std::vector<bool>());
      const std::vector<bool>& keep = keeps.back();
      if (masks) kept.push_back(std::count(keep.begin(), keep.end(), true));
      column_title(int(h) + 1, 0, str_cat("head ", h));
      if (masks)
        column_title(int(h) + 1, 1,
                     str_cat("head ", h, ", ", std::lround(args->threshold * 100), "%"));
      const auto [hx, hy] = origin(int(h) + 1, 0);
      const auto [mx, my] = origin(int(h) + 1, 1);
      for (int y = 0; y < panel; ++y)
        for (int x = 0; x < panel; ++x) {
          const size_t patch = size_t(y / up / P * g + x / up / P);
          const Rgb rgb = attention_rgb(a, patch);
          std::copy(rgb.begin(), rgb.end(), canvas.at(hx + x, hy + y));
          if (!masks) continue;
          const Rgb m = masked_rgb(shown, x, y, up, keep[patch]);
          std::copy(m.begin(), m.end(), canvas.at(mx + x, my + y));
        }
    }
    canvas.write_png(args->out, "attention");

    // visualize_attention.py's files, at the input's size.
    if (!args->per_head.empty()) {
      std::filesystem::create_directories(args->per_head);
      const std::filesystem::path dir(args->per_head);
      auto write = [&](const std::string& name, auto pixel) {
        Canvas c(static_cast<int>(S), static_cast<int>(S), kBackground);
        for (int y = 0; y < int(S); ++y)
          for (int x = 0; x < int(S); ++x) {
            const Rgb v = pixel(x, y);
            std::copy(v.begin(), v.end(), c.at(x, y));
          }
        c.write_png((dir / name).string(), "attention");
      };
      write("img.png", [&](int x, int y) {
        const auto c = image_rgb(shown, x, y, 1);
        return Rgb{uint8_t(std::lround(c[0])), uint8_t(std::lround(c[1])),
                   uint8_t(std::lround(c[2]))};
      });
      for (int64_t h = 0; h < H; ++h) {
        write(str_cat("attn-head", h, ".png"), [&](int x, int y) {
          return attention_rgb(attn[size_t(h)], size_t(y / P * g + x / P));
        });
        if (masks)
          write(str_cat("mask_th", th, "_head", h, ".png"), [&](int x, int y) {
            return masked_rgb(shown, x, y, 1, keeps[size_t(h)][size_t(y / P * g + x / P)]);
          });
      }
    }

    std::printf("wrote %s: %d x %d px, input %ld px, %ld heads over a %ld x %ld patch grid%s\n",
                args->out.c_str(), canvas.width(), canvas.height(), long(S), long(H), long(g),
                long(g), masks ? ", second row: threshold masks" : "");
    if (!args->per_head.empty())
      std::printf("wrote %s/: img.png, attn-head0..%ld.png%s\n", args->per_head.c_str(),
                  long(H - 1),
                  masks ? str_cat(", mask_th", th, "_head0..", H - 1, ".png").c_str() : "");
    if (args->json) {
      nlohmann::json out = {{"out", args->out},
                            {"width", canvas.width()},
                            {"height", canvas.height()},
                            {"size", S},
                            {"patch", P},
                            {"grid", g},
                            {"heads", H},
                            {"threshold", args->threshold},
                            {"source", source}};
      if (masks) out["kept_patches"] = kept;
      if (!args->per_head.empty()) out["per_head"] = args->per_head;
      std::cout << out.dump() << std::endl;
    }
  });
}

}  // namespace dino::tools
