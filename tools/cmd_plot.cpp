// `dino plot RUN_DIR`: the training curves of a run (its metrics.jsonl) in one PNG: loss,
// learning rate, teacher temperature and momentum, the teacher's entropies with the collapse
// monitor's thresholds, images/s.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "core/safetensors.h"
#include "losses/dino_loss.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/picture.h"

namespace dino::tools {

namespace {

namespace fs = std::filesystem;

constexpr Rgb kWhite{255, 255, 255}, kInk{40, 40, 40}, kGrid{228, 228, 228}, kFaint{150, 150, 150};
constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kRed{214, 39, 40}, kGreen{44, 160, 44},
    kPurple{148, 103, 189}, kLightBlue{174, 199, 232};

struct Series {
  std::string label;
  std::vector<double> x, y;
  Rgb color;
  double width = 2.0;
};

struct Guide {  // a horizontal dashed line with its label
  double y;
  std::string label;
  Rgb color;
};

struct Panel {
  std::string title;
  std::vector<Series> series;
  std::vector<Guide> guides;
  std::string empty_note;  // shown instead of curves when there is no data
};

// 1, 2 or 5 times a power of ten, near range / target.
double nice_step(double range, int target) {
  const double raw = range / target, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::string tick_label(double v, double step, double magnitude) {
  char buf[32];
  if (std::fabs(v) < step * 1e-6) return "0";
  if (magnitude != 0 && (magnitude < 1e-2 || magnitude >= 1e5))
    std::snprintf(buf, sizeof buf, "%.1e", v);
  else if (step >= 1)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", std::min(6, int(std::ceil(-std::log10(step) - 1e-9))),
                  v);
  return buf;
}

// Trailing mean over `window` points, so a noisy curve shows its trend.
std::vector<double> moving_average(const std::vector<double>& y, size_t window) {
  std::vector<double> out(y.size());
  double sum = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    sum += y[i];
    if (i >= window) sum -= y[i - window];
    out[i] = sum / double(std::min(i + 1, window));
  }
  return out;
}

void draw_panel(Canvas& c, const Panel& p, int x0, int y0, int w, int h, double xmax) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : p.series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  for (const Guide& g : p.guides) lo = std::min(lo, g.y), hi = std::max(hi, g.y);
  const bool empty = !(lo <= hi);
  if (!empty && hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {  // a constant: centre it
    const double pad = std::fabs(hi) > 0 ? std::fabs(hi) * 0.1 : 1.0;
    lo -= pad, hi += pad;
  } else if (!empty) {
    const double pad = (hi - lo) * 0.06;
    lo -= pad, hi += pad;
  }
  const double ys = empty ? 1 : nice_step(hi - lo, 5), xs = nice_step(xmax, 6);
  const double magnitude = empty ? 0 : std::max(std::fabs(lo), std::fabs(hi));
  std::vector<std::pair<double, std::string>> yticks;
  int label_width = 0;
  for (double v = std::ceil(lo / ys) * ys; !empty && v <= hi; v += ys) {
    yticks.push_back({v, tick_label(v, ys, magnitude)});
    label_width = std::max(label_width, Canvas::text_width(yticks.back().second));
  }
  const int left = label_width + 20, right = 14, top = 34, bottom = 44;
  const int px = x0 + left, py = y0 + top, pw = w - left - right, ph = h - top - bottom;
  c.text(px, y0 + 10, p.title, kInk, 2);
  c.fill_rect(px, py, pw, ph, kWhite);
  if (empty) {
    c.text(px + 12, py + ph / 2 - 7, p.empty_note.empty() ? "no data" : p.empty_note, kFaint, 2);
    return;
  }
  auto X = [&](double v) { return px + v / xmax * pw; };
  auto Y = [&](double v) { return py + ph - (v - lo) / (hi - lo) * ph; };

  // Grid and tick labels.
  for (const auto& [v, t] : yticks) {
    c.line(px, Y(v), px + pw, Y(v), kGrid, 1);
    c.text(px - 8 - Canvas::text_width(t), Y(v) - 6, t, kInk, 2);
  }
  for (double v = 0; v <= xmax * (1 + 1e-9); v += xs) {
    c.line(X(v), py, X(v), py + ph, kGrid, 1);
    const std::string t = tick_label(v, xs, 0);
    c.text(X(v) - Canvas::text_width(t) / 2.0, py + ph + 8, t, kInk, 2);
  }
  c.text(px + pw / 2.0 - Canvas::text_width("step") / 2.0, py + ph + 26, "step", kFaint, 2);

  for (const Guide& g : p.guides) c.line(px, Y(g.y), px + pw, Y(g.y), g.color, 1.5, 6);
  for (const Series& s : p.series)
    for (size_t i = 1; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i - 1]) && std::isfinite(s.y[i]))
        c.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), s.color, s.width);
  // Guide labels over the curves, on a white ground, below the line (above it at the bottom).
  struct Box {
    int x, y, w, h;
    bool overlaps(const Box& o) const {
      return x < o.x + o.w && o.x < x + w && y < o.y + o.h && o.y < y + h;
    }
  };
  std::vector<Box> taken;
  for (const Guide& g : p.guides) {
    const int tw = Canvas::text_width(g.label), tx = px + pw - tw - 8;
    const int ty = int(Y(g.y) > py + ph - 24 ? Y(g.y) - 20 : Y(g.y) + 5);
    c.fill_rect(tx - 3, ty - 2, tw + 6, 18, kWhite);
    c.text(tx, ty, g.label, g.color, 2);
    taken.push_back({tx - 3, ty - 2, tw + 6, 18});
  }
  // Frame, then the legend of the labelled series at the left, where it covers the fewest
  // points and no guide label.
  c.line(px, py, px + pw, py, kFaint, 1);
  c.line(px, py + ph, px + pw, py + ph, kFaint, 1);
  c.line(px, py, px, py + ph, kFaint, 1);
  c.line(px + pw, py, px + pw, py + ph, kFaint, 1);
  std::vector<const Series*> labelled;
  int legend_w = 0;
  for (const Series& s : p.series)
    if (!s.label.empty()) {
      labelled.push_back(&s);
      legend_w = std::max(legend_w, Canvas::text_width(s.label) + 40);
    }
  if (labelled.empty()) return;
  const int legend_h = 22 * int(labelled.size());
  int best_y = py + 8;
  double best_score = INFINITY;
  for (int y = py + 8; y + legend_h <= py + ph - 4; y += 12) {
    const Box box{px + 10, y - 2, legend_w, legend_h};
    double score = 0;
    for (const Box& t : taken) score += box.overlaps(t) ? 1e6 : 0;
    for (const Guide& g : p.guides) score += Y(g.y) >= box.y && Y(g.y) <= box.y + box.h ? 50 : 0;
    for (const Series& s : p.series)
      for (size_t i = 0; i < s.x.size(); ++i) {
        const double x = X(s.x[i]), yy = Y(s.y[i]);
        score += x >= box.x && x <= box.x + box.w && yy >= box.y && yy <= box.y + box.h;
      }
    if (score < best_score) best_score = score, best_y = y;
  }
  c.fill_rect(px + 10, best_y - 2, legend_w, legend_h, kWhite);
  for (size_t i = 0; i < labelled.size(); ++i) {
    const int ly = best_y + 22 * int(i);
    c.line(px + 14, ly + 7, px + 34, ly + 7, labelled[i]->color, 3);
    c.text(px + 40, ly + 1, labelled[i]->label, kInk, 2);
  }
}

}  // namespace

void add_plot_command(CLI::App& app) {
  struct Args {
    std::string run, out;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "plot", "Draw a run's training curves (RUN_DIR/metrics.jsonl) into one PNG");
  cmd->add_option("run", args->run, "Run folder written by `dino train --out`")->required();
  cmd->add_option("--out", args->out,
                  "Output PNG (default RUN_DIR/curves.png; written to OUT.tmp, then renamed)");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    const fs::path dir(args->run), metrics_path = dir / "metrics.jsonl";
    std::error_code ec;
    DINO_CHECK(fs::is_directory(dir, ec), "[plot] ", args->run,
               " is not a run folder (`dino train --out DIR` writes one)");
    std::ifstream in(metrics_path);
    DINO_CHECK(in, "[plot] no ", metrics_path.string(), ": has the run taken a step?");
    const std::string out = args->out.empty() ? (dir / "curves.png").string() : args->out;

    std::map<std::string, std::vector<double>> col;
    std::vector<double> steps;
    std::string line;
    int64_t lineno = 0, skipped = 0;
    const char* keys[] = {"loss",
                          "lr",
                          "teacher_temp",
                          "teacher_momentum",
                          "teacher_entropy",
                          "batch_entropy",
                          "images_per_second",
                          "epoch"};
    while (std::getline(in, line)) {
      ++lineno;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("step")) {
        ++skipped;  // a torn last line after a crash
        continue;
      }
      steps.push_back(j.at("step").get<double>());
      for (const char* k : keys)
        col[k].push_back(j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN);
    }
    DINO_CHECK(!steps.empty(), "[plot] ", metrics_path.string(), " holds no steps");

    // ln K from the run's recipe in its checkpoint's header, for the collapse thresholds.
    double log_k = NAN;
    const fs::path ck = dir / "checkpoint.safetensors";
    if (fs::exists(ck, ec)) {
      const auto md = load_safetensors_metadata(ck.string());
      if (md.count("config"))
        log_k =
            std::log(nlohmann::json::parse(md.at("config")).at("head").at("out_dim").get<double>());
    }

    const double xmax = steps.back();
    const size_t window = std::max<size_t>(1, steps.size() / 50);
    auto raw = [&](const char* key, Rgb color, std::string label = "") {
      return Series{std::move(label), steps, col[key], color, 1.2};
    };
    auto smooth = [&](const char* key, Rgb color, std::string label = "") {
      return Series{std::move(label), steps, moving_average(col[key], window), color, 2.5};
    };
    std::vector<Panel> panels(6);
    panels[0].title = "DINO loss";
    panels[0].series = {raw("loss", kLightBlue),
                        smooth("loss", kBlue, str_cat("mean of ", window, " steps"))};
    panels[1].title = "learning rate";
    panels[1].series = {raw("lr", kBlue)};
    panels[2].title = "teacher temperature";
    panels[2].series = {raw("teacher_temp", kOrange)};
    panels[3].title = "teacher momentum (EMA)";
    panels[3].series = {raw("teacher_momentum", kPurple)};
    panels[4].title = "entropy of the teacher's outputs (nats)";
    panels[4].series = {raw("teacher_entropy", kBlue, "per image (sharpness)"),
                        raw("batch_entropy", kGreen, "batch mean (diversity)")};
    if (std::isfinite(log_k)) {
      panels[0].guides = {{log_k, "ln K: uniform", kRed}};
      panels[4].guides = {
          {kUniformCollapseFraction * log_k, "uniform collapse above", kRed},
          {kDominantCollapseFraction * log_k, "one-dimension collapse below", kRed}};
    }
    panels[5].title = "images / s";
    panels[5].series = {raw("images_per_second", kLightBlue), smooth("images_per_second", kGreen)};
    panels[5].empty_note = "no timing in this metrics.jsonl";

    const int pw = 560, ph = 400, header = 46;
    Canvas canvas(3 * pw, 2 * ph + header, {246, 246, 246});
    const double epochs = col["epoch"].back();
    canvas.text(
        16, 14,
        str_cat(
            "dino train: ", args->run, "  -  ", long(xmax), " steps",
            std::isfinite(epochs) ? str_cat(", ", std::round(epochs * 100) / 100, " epochs") : "",
            std::isfinite(log_k) ? str_cat(", K = ", std::lround(std::exp(log_k))) : ""),
        kInk, 2);
    for (size_t i = 0; i < panels.size(); ++i)
      draw_panel(canvas, panels[i], int(i % 3) * pw, header + int(i / 3) * ph, pw, ph, xmax);
    canvas.write_png(out, "plot");
    std::printf("wrote %s: %ld steps%s%s\n", out.c_str(), long(steps.size()),
                skipped ? str_cat(", ", skipped, " unreadable lines skipped").c_str() : "",
                std::isfinite(log_k) ? "" : " (no checkpoint: collapse thresholds not drawn)");
    if (args->json)
      std::cout << nlohmann::json{{"out", out},
                                  {"steps", steps.size()},
                                  {"skipped_lines", skipped},
                                  {"width", canvas.width()},
                                  {"height", canvas.height()}}
                       .dump()
                << std::endl;
  });
}

}  // namespace dino::tools
