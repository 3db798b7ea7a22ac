// A procedural dataset for tests and quick experiments without files. Each class is a
// shape family (stripes, ring, cross, ...) in a class-specific orientation or thickness;
// every image draws its own position, size, small rotation, contrast, background, colours,
// a distracting blob and pixel noise. The class survives those nuisances for a learned,
// translation-tolerant feature, while raw-pixel neighbours are dominated by them.
// Image id i is drawn from Rng::derive({seed, salt, i}); the test split uses ids n.. so the
// two splits never share an image.
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "data/datasets.h"

namespace dino::data {
namespace {

constexpr int kFamilies = 8;
constexpr double kPi = 3.14159265358979323846;
constexpr uint64_t kSalt = 0x73796e7468ull;  // "synth": keeps these streams apart from others

double gauss(double d, double w) { return std::exp(-(d * d) / (w * w)); }
double smooth_step(double edge_dist) { return 1.0 / (1.0 + std::exp(-edge_dist * 12.0)); }

// Intensity in [0, 1] of family f at rotated, radius-normalised coordinates (u, v).
// `fine` (>= 1) narrows strokes and raises frequencies for a family's later variants.
double shape(int f, double u, double v, double fine) {
  const double r = std::sqrt(u * u + v * v);
  const double disk = smooth_step(1.0 - r);
  switch (f) {
    case 0: return disk * (0.5 + 0.5 * std::cos(2 * kPi * 1.6 * fine * u));
    case 1: return gauss(r - 0.7, 0.18 / fine);
    case 2: return std::max(gauss(u, 0.2 / fine) * smooth_step(1 - std::fabs(v)),
                            gauss(v, 0.2 / fine) * smooth_step(1 - std::fabs(u)));
    case 3: return gauss(std::max(std::fabs(u), std::fabs(v)) - 0.7, 0.14 / fine);
    case 4: {
      const double s = std::sin(kPi * 1.5 * fine * u) * std::sin(kPi * 1.5 * fine * v);
      return smooth_step(1 - std::max(std::fabs(u), std::fabs(v))) * (0.5 + 0.5 * std::tanh(4 * s));
    }
    case 5:  // filled triangle pointing along +v
      return smooth_step(v + 0.6) * smooth_step((1.0 - v) * 0.62 / fine - std::fabs(u));
    case 6: return std::max(gauss(std::hypot(u - 0.55, v), 0.3 / fine),
                            gauss(std::hypot(u + 0.55, v), 0.3 / fine));
    default:  // crescent
      return smooth_step(0.85 - r) * (1.0 - smooth_step(0.65 / fine - std::hypot(u - 0.4, v)));
  }
}

class Synthetic : public Dataset {
 public:
  Synthetic(const SyntheticConfig& cfg, Split split)
      : cfg_(cfg),
        split_(split),
        count_(split == Split::train ? cfg.n : cfg.test),
        first_id_(split == Split::train ? 0 : cfg.n) {}

  size_t size() const override { return size_t(count_); }
  int num_classes() const override { return cfg_.classes; }
  int channels() const override { return cfg_.channels; }
  int native_size() const override { return cfg_.size; }

  int label(size_t index) const override {
    check_index(index);
    return int((first_id_ + int64_t(index)) % cfg_.classes);
  }

  std::string describe() const override {
    return str_cat("synthetic ", split_name(split_), " (", count_, " images, ", cfg_.size, "x",
                   cfg_.size, "x", cfg_.channels, ", ", cfg_.classes, " classes, seed ",
                   cfg_.seed, ")");
  }

  Image get(size_t index) const override {
    const int cls = label(index);
    Rng rng = Rng::derive({cfg_.seed, kSalt, uint64_t(first_id_ + int64_t(index))});
    const int S = cfg_.size, C = cfg_.channels;
    const int family = cls % kFamilies, variant = cls / kFamilies;
    // Odd variants turn the shape by 45 degrees (distinct for all but the ring), and every
    // second variant makes it finer, so classes beyond the families stay separable.
    const double angle = (variant % 2) * kPi / 4 + rng.uniform(-0.26, 0.26);
    const double fine = 1.0 + 0.45 * (variant / 2) + (family == 1 ? 0.45 * (variant % 2) : 0.0);
    const double cx = S * rng.uniform(0.3, 0.7), cy = S * rng.uniform(0.3, 0.7);
    const double radius = S * rng.uniform(0.22, 0.42);
    const double contrast = rng.uniform(0.45, 1.0);
    const double noise = rng.uniform(0.02, 0.12);
    const double blob_x = S * rng.uniform(0.0, 1.0), blob_y = S * rng.uniform(0.0, 1.0);
    const double blob_r = S * rng.uniform(0.08, 0.2), blob_a = rng.uniform(0.1, 0.6);
    double fg[3], bg[3];
    const double bg_level = rng.uniform(0.0, 0.3);
    for (int c = 0; c < 3; ++c) {
      fg[c] = C == 1 ? 1.0 : rng.uniform(0.35, 1.0);
      bg[c] = C == 1 ? bg_level : rng.uniform(0.0, 0.35);
    }
    const double ca = std::cos(angle), sa = std::sin(angle);
    Image img = make_image(C, S, S);
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const double dx = (x + 0.5 - cx) / radius, dy = (y + 0.5 - cy) / radius;
        const double s = contrast * shape(family, ca * dx + sa * dy, -sa * dx + ca * dy, fine);
        const double blob = blob_a * gauss(std::hypot(x + 0.5 - blob_x, y + 0.5 - blob_y), blob_r);
        for (int c = 0; c < C; ++c) {
          const double v = bg[c] + (fg[c] - bg[c]) * std::min(1.0, s + blob) + noise * rng.normal();
          img.at(c, y, x) = float(std::min(1.0, std::max(0.0, v)));
        }
      }
    return img;
  }

 private:
  void check_index(size_t index) const {
    DINO_CHECK(index < size_t(count_), "[synthetic] index ", index, " out of range (", count_,
               " images)");
  }

  SyntheticConfig cfg_;
  Split split_;
  int64_t count_, first_id_;
};

}  // namespace

SyntheticConfig parse_synthetic_config(const std::string& options) {
  SyntheticConfig cfg;
  size_t pos = 0;
  while (pos < options.size()) {
    size_t end = options.find(',', pos);
    if (end == std::string::npos) end = options.size();
    const std::string item = options.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    DINO_CHECK(eq != std::string::npos, "[synthetic] option '", item, "' in '", options,
               "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    int64_t number = 0;
    size_t used = 0;
    try {
      number = std::stoll(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DINO_CHECK(!value.empty() && used == value.size(), "[synthetic] option '", item,
               "' needs an integer value");
    if (key == "n") cfg.n = number;
    else if (key == "test") cfg.test = number;
    else if (key == "size") cfg.size = int(number);
    else if (key == "classes") cfg.classes = int(number);
    else if (key == "channels") cfg.channels = int(number);
    else if (key == "seed") cfg.seed = uint64_t(number);
    else
      throw Error(str_cat("[synthetic] unknown option '", key,
                          "' (known: n, test, size, classes, channels, seed)"));
  }
  return cfg;
}

std::unique_ptr<Dataset> open_synthetic(const SyntheticConfig& config, Split split) {
  SyntheticConfig cfg = config;
  if (cfg.test < 0) cfg.test = cfg.n / 5;
  DINO_CHECK(cfg.n > 0 && cfg.test > 0, "[synthetic] n and test must be positive, got n=", cfg.n,
             ", test=", cfg.test);
  DINO_CHECK(cfg.size >= 8 && cfg.size <= 1024, "[synthetic] size must be in 8..1024, got ",
             cfg.size);
  DINO_CHECK(cfg.classes >= 2, "[synthetic] classes must be at least 2, got ", cfg.classes);
  DINO_CHECK(cfg.channels == 1 || cfg.channels == 3, "[synthetic] channels must be 1 or 3, got ",
             cfg.channels);
  return std::make_unique<Synthetic>(cfg, split);
}

}  // namespace dino::data
