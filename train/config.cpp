#include "train/config.h"

#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/suggest.h"

namespace dino {

using nlohmann::json;

json default_config() {
  // facebookresearch/dino main_dino.py defaults for ViT-S/16; recipes override.
  return json{
      {"data", {{"dataset", "fashion-mnist"}, {"loader_threads", 1}, {"augment", "auto"}}},
      {"model",
       {{"arch", "vit_small"},
        {"img_size", 224},
        {"patch_size", 16},
        {"embed_dim", 0},
        {"depth", 0},
        {"num_heads", 0},
        {"drop_path_rate", 0.1},
        {"attention", "ours"},
        {"init_from", ""}}},
      {"head",
       {{"out_dim", 65536},
        {"hidden_dim", 2048},
        {"bottleneck_dim", 256},
        {"nlayers", 3},
        {"norm_last_layer", true}}},
      {"crops",
       {{"global_size", 224},
        {"global_scale", {0.4, 1.0}},
        {"local_crops", 8},
        {"local_size", 96},
        {"local_scale", {0.05, 0.4}},
        {"flip_p", 0.5},
        {"jitter_p", 0.8},
        {"brightness", 0.4},
        {"contrast", 0.4},
        {"saturation", 0.2},
        {"hue", 0.1},
        {"grayscale_p", 0.2},
        {"blur_p", {1.0, 0.1, 0.5}},
        {"blur_sigma", {0.1, 2.0}},
        {"solarize_p", 0.2}}},
      {"optim",
       {{"batch_size", 64},
        {"epochs", 100.0},
        {"lr", 5e-4},
        {"min_lr", 1e-6},
        {"warmup_epochs", 10.0},
        {"weight_decay", 0.04},
        {"weight_decay_end", 0.4},
        {"clip_grad", 3.0},
        {"freeze_last_layer", 1.0},
        {"momentum_teacher", 0.996}}},
      {"loss",
       {{"student_temp", 0.1},
        {"teacher_temp", 0.04},
        {"warmup_teacher_temp", 0.04},
        {"warmup_teacher_temp_epochs", 0.0},
        {"center_momentum", 0.9},
        {"koleo_weight", 0.0}}},
      {"run",
       {{"seed", 0},
        {"max_steps", 0},
        {"log_every", 10},
        {"checkpoint_every", 0},
        {"knn", true},
        {"knn_k", 20},
        {"knn_temperature", 0.07},
        {"eval_batch", 256},
        {"cuda_graph", false}}},
  };
}

const std::map<std::string, std::string>& recipe_key_meanings() {
  static const std::map<std::string, std::string> meanings{
      {"data.dataset",
       "training data: fashion-mnist[:DIR], cifar10:DIR, cifar100:DIR, folder:DIR, synthetic:OPTS"},
      {"data.loader_threads", "CPU threads that decode and augment images ahead of the step"},
      {"data.augment",
       "where the multi-crop augmentation runs: gpu, cpu, or auto (gpu with --device cuda)"},
      {"model.arch",
       "ViT preset (vit_micro, vit_cpu, vit_tiny, vit_small, vit_base...): width, depth, heads"},
      {"model.img_size",
       "side of the global crops the position embedding is laid out for, in pixels"},
      {"model.patch_size", "side of a patch token in pixels (DINO: 16 or 8)"},
      {"model.embed_dim", "token width; 0 keeps the preset's"},
      {"model.depth", "transformer blocks; 0 keeps the preset's"},
      {"model.num_heads", "attention heads per block; 0 keeps the preset's"},
      {"model.drop_path_rate", "stochastic depth of the student (the teacher has none)"},
      {"model.attention",
       "attention kernels on the GPU: ours, ours-mma (the portable mma.sync ones even on an sm_90 "
       "device, where ours are Hopper's wgmma ones), or cudnn (cuDNN's SDPA)"},
      {"model.init_from",
       "backbone file or checkpoint whose ViT weights student and teacher start from; \"\": "
       "random"},
      {"head.out_dim", "K, the prototypes of the DINO head's softmax (DINO: 65536)"},
      {"head.hidden_dim", "width of the head's MLP"},
      {"head.bottleneck_dim", "width of the L2-normalised bottleneck before the last layer"},
      {"head.nlayers", "layers of the head's MLP"},
      {"head.norm_last_layer", "weight-normalise the last layer with its norm fixed at 1"},
      {"crops.global_size", "side of the two global crops, in pixels"},
      {"crops.global_scale", "[min, max] area fraction of the image a global crop covers"},
      {"crops.local_crops", "number of small local crops per image (0: global crops only)"},
      {"crops.local_size", "side of a local crop, in pixels"},
      {"crops.local_scale", "[min, max] area fraction of the image a local crop covers"},
      {"crops.flip_p", "probability of a horizontal flip"},
      {"crops.jitter_p", "probability of colour jitter"},
      {"crops.brightness", "colour jitter: brightness factor range 1 +- this"},
      {"crops.contrast", "colour jitter: contrast factor range 1 +- this"},
      {"crops.saturation", "colour jitter: saturation factor range 1 +- this"},
      {"crops.hue", "colour jitter: hue shift range +- this (of a full turn)"},
      {"crops.grayscale_p", "probability of turning a crop grey"},
      {"crops.blur_p", "probability of Gaussian blur: [first global, second global, local]"},
      {"crops.blur_sigma", "[min, max] sigma of the Gaussian blur, in pixels"},
      {"crops.solarize_p", "probability of solarizing the second global crop"},
      {"optim.batch_size", "images per step"},
      {"optim.epochs", "length of the run; every schedule is laid out over it"},
      {"optim.lr", "peak learning rate at batch 256 (scaled linearly by batch_size / 256)"},
      {"optim.min_lr", "learning rate at the end of the cosine decay"},
      {"optim.warmup_epochs", "epochs of linear learning-rate warmup"},
      {"optim.weight_decay", "AdamW weight decay at the start (cosine schedule)"},
      {"optim.weight_decay_end", "AdamW weight decay at the end"},
      {"optim.clip_grad", "per-parameter gradient norm clip (0: none)"},
      {"optim.freeze_last_layer", "epochs during which the head's last layer is not updated"},
      {"optim.momentum_teacher", "EMA momentum of the teacher at the start, rising to 1 (cosine)"},
      {"loss.student_temp", "softmax temperature of the student's outputs"},
      {"loss.teacher_temp", "softmax temperature of the teacher after its warmup"},
      {"loss.warmup_teacher_temp", "teacher temperature at the start of its warmup"},
      {"loss.warmup_teacher_temp_epochs", "epochs of linear teacher-temperature warmup"},
      {"loss.center_momentum", "EMA momentum of the center subtracted from the teacher's outputs"},
      {"loss.koleo_weight",
       "weight of DINOv2's KoLeo term on the student's global-view CLS; 0: off"},
      {"run.seed", "seed of the weights, the augmentations and stochastic depth"},
      {"run.max_steps",
       "stop after this many steps (0: all); the schedules are cut, not compressed"},
      {"run.log_every", "steps between progress lines"},
      {"run.checkpoint_every", "steps between checkpoints (0: only at the end)"},
      {"run.knn", "run the k-NN evaluation on the test split after training"},
      {"run.knn_k", "neighbours that vote in the k-NN evaluation"},
      {"run.knn_temperature", "k-NN vote weight exp(cosine / T)"},
      {"run.eval_batch", "images per forward pass while extracting k-NN features"},
      {"run.cuda_graph",
       "run each step's forwards and backward as one recorded CUDA graph (--device cuda, one "
       "process; the same results, fewer launches)"},
  };
  return meanings;
}

namespace {

// Every leaf key of a recipe, dotted ("optim.lr").
void leaf_keys(const json& j, const std::string& path, std::vector<std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    if (it->is_object())
      leaf_keys(*it, key, out);
    else
      out.push_back(key);
  }
}

// A typo of a key, or a key put in the wrong group ("model.lr" for "optim.lr").
std::string key_suggestion(const std::string& key) {
  std::vector<std::string> keys;
  leaf_keys(default_config(), "", keys);
  const std::string near = did_you_mean(key, keys);
  if (!near.empty()) return near;
  const std::string leaf = key.substr(key.rfind('.') + 1);
  for (const std::string& k : keys)
    if (k.size() > leaf.size() &&
        k.compare(k.size() - leaf.size() - 1, std::string::npos, "." + leaf) == 0)
      return "; did you mean '" + k + "'?";
  return "";
}

bool same_kind(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return !(a.is_number_integer() && b.is_number_float());
  return a.type() == b.type();
}

void merge_into(json& base, const json& over, const std::string& origin, const std::string& path) {
  DINO_CHECK(over.is_object(), "[config] ", origin, ": '", path.empty() ? "(top)" : path,
             "' must be an object");
  for (auto it = over.begin(); it != over.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    DINO_CHECK(base.contains(it.key()), "[config] ", origin, ": unknown key '", key, "'",
               key_suggestion(key), " (`dino config` lists every key)");
    json& slot = base[it.key()];
    if (slot.is_object()) {
      merge_into(slot, it.value(), origin, key);
      continue;
    }
    json value = it.value();
    if (slot.is_number_float() && value.is_number_integer()) value = value.get<double>();
    DINO_CHECK(same_kind(slot, value), "[config] ", origin, ": '", key, "' expects a ",
               slot.type_name(), " like ", slot.dump(), ", got ", value.dump());
    DINO_CHECK(!slot.is_array() || slot.size() == value.size(), "[config] ", origin, ": '", key,
               "' expects ", slot.size(), " values, got ", value.dump());
    for (size_t i = 0; slot.is_array() && i < value.size(); ++i)
      DINO_CHECK(value[i].is_number(), "[config] ", origin, ": '", key, "' expects numbers, got ",
                 value.dump());
    slot = value;
  }
}

// Every key of `defaults` must be in `cfg` (a saved recipe carries them all).
void require_every_key(const json& defaults, const json& cfg, const std::string& origin,
                       const std::string& path) {
  DINO_CHECK(cfg.is_object(), "[config] ", origin, ": '", path.empty() ? "(top)" : path,
             "' must be an object");
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    DINO_CHECK(cfg.contains(it.key()), "[config] ", origin, ": the recipe has no '", key, "'");
    if (it->is_object()) require_every_key(*it, cfg.at(it.key()), origin, key);
  }
}

// An interval of allowed values, and how an error message says it.
struct Range {
  double lo, hi;
  bool lo_open = false, hi_open = false;
  bool contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
  std::string describe() const {
    if (std::isinf(hi)) return str_cat(lo_open ? "> " : ">= ", lo);
    return str_cat("in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
  }
};
constexpr double kInf = std::numeric_limits<double>::infinity();
const Range kPositive{0, kInf, true};
const Range kNonNegative{0, kInf};
const Range kProbability{0, 1};

// Typed, range-checked reads of "group.key" from a merged recipe.
class Reader {
 public:
  Reader(const json& cfg, const std::string& origin) : cfg_(cfg), origin_(origin) {}

  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    throw Error(str_cat("[config] ", origin_, ": '", key, "' is ", value(key).dump(), "; expected ",
                        expected));
  }
  const json& value(const std::string& key) const {
    const size_t dot = key.find('.');
    return cfg_.at(key.substr(0, dot)).at(key.substr(dot + 1));
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const json& v = value(key);
    const std::string expected = hi == std::numeric_limits<int64_t>::max()
                                     ? str_cat("an integer >= ", lo)
                                     : str_cat("an integer in [", lo, ", ", hi, "]");
    if (!v.is_number_integer()) fail(key, expected);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(key, expected);
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(key, expected);
    return x;
  }
  double number(const std::string& key, const Range& range) const {
    const json& v = value(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || !range.contains(v.get<double>()))
      fail(key, "a number " + range.describe());
    return v.get<double>();
  }
  std::vector<double> numbers(const std::string& key, size_t n, const Range& range) const {
    const json& v = value(key);
    const std::string expected = str_cat(n, " numbers ", range.describe());
    if (!v.is_array() || v.size() != n) fail(key, expected);
    std::vector<double> out;
    for (const json& x : v) {
      if (!x.is_number() || !std::isfinite(x.get<double>()) || !range.contains(x.get<double>()))
        fail(key, expected);
      out.push_back(x.get<double>());
    }
    return out;
  }
  bool boolean(const std::string& key) const {
    if (!value(key).is_boolean()) fail(key, "true or false");
    return value(key).get<bool>();
  }
  std::string text(const std::string& key) const {
    if (!value(key).is_string() || value(key).get<std::string>().empty())
      fail(key, "a non-empty string");
    return value(key).get<std::string>();
  }
  // A string that may be empty (a path that is optional).
  std::string optional_text(const std::string& key) const {
    if (!value(key).is_string()) fail(key, "a string (\"\" for none)");
    return value(key).get<std::string>();
  }
  // Cross-key rules: `ok`, or an error naming both keys.
  void require(bool ok, const std::string& key, const std::string& rule) const {
    if (!ok) fail(key, rule);
  }

 private:
  const json& cfg_;
  const std::string& origin_;
};

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
// Upper bounds that no real recipe reaches but that keep every product of them (step counts,
// buffer sizes) far from overflow.
constexpr int64_t kMaxSide = 1 << 16;    // image and crop sides
constexpr int64_t kMaxWidth = 1 << 16;   // embedding and head widths
constexpr int64_t kMaxOutDim = 1 << 24;  // DINO head outputs (K)
constexpr double kMaxEpochs = 1e6;

DataConfig read_data(const Reader& r) {
  DataConfig d;
  d.dataset = r.text("data.dataset");
  d.loader_threads = int(r.integer("data.loader_threads", 1, 1024));
  d.augment = r.text("data.augment");
  if (d.augment != "gpu" && d.augment != "cpu" && d.augment != "auto")
    r.fail("data.augment", "\"gpu\", \"cpu\" or \"auto\"");
  return d;
}

ModelConfig read_model(const Reader& r) {
  ModelConfig m;
  const std::string arch = r.text("model.arch");
  std::string known;
  for (const std::string& name : vit_preset_names()) known += (known.empty() ? "" : ", ") + name;
  bool preset = false;
  for (const std::string& name : vit_preset_names()) preset |= name == arch;
  if (!preset) r.fail("model.arch", "one of " + known);
  m.arch = arch;
  m.vit = vit_preset(arch);
  m.vit.img_size = r.integer("model.img_size", 1, kMaxSide);
  m.vit.patch_size = r.integer("model.patch_size", 1, kMaxSide);
  r.require(m.vit.patch_size <= m.vit.img_size, "model.patch_size",
            str_cat("at most model.img_size (", m.vit.img_size, ")"));
  // 0 keeps the preset's value.
  if (int64_t v = r.integer("model.embed_dim", 0, kMaxWidth)) m.vit.embed_dim = v;
  if (int64_t v = r.integer("model.depth", 0, 1024)) m.vit.depth = v;
  if (int64_t v = r.integer("model.num_heads", 0, kMaxWidth)) m.vit.num_heads = v;
  r.require(m.vit.embed_dim % m.vit.num_heads == 0, "model.num_heads",
            str_cat("a divisor of the embedding width ", m.vit.embed_dim, " (model.embed_dim or ",
                    arch, "'s)"));
  m.vit.drop_path_rate = r.number("model.drop_path_rate", Range{0, 1, false, true});
  m.init_from = r.optional_text("model.init_from");
  m.attention = r.text("model.attention");
  if (m.attention != "ours" && m.attention != "ours-mma" && m.attention != "cudnn")
    r.fail("model.attention", "\"ours\", \"ours-mma\" or \"cudnn\"");
  return m;
}

HeadConfig read_head(const Reader& r, int64_t embed_dim) {
  HeadConfig h;
  h.in_dim = embed_dim;
  h.out_dim = r.integer("head.out_dim", 1, kMaxOutDim);
  h.hidden_dim = r.integer("head.hidden_dim", 1, kMaxWidth);
  h.bottleneck_dim = r.integer("head.bottleneck_dim", 1, kMaxWidth);
  h.nlayers = r.integer("head.nlayers", 1, 64);
  h.norm_last_layer = r.boolean("head.norm_last_layer");
  return h;
}

data::MultiCropConfig read_crops(const Reader& r, int64_t patch_size) {
  data::MultiCropConfig m;
  const Range scale{0, 1, true, false};
  const auto gs = r.numbers("crops.global_scale", 2, scale);
  r.require(gs[0] <= gs[1], "crops.global_scale", "[min, max] with min <= max");
  const int64_t global_size = r.integer("crops.global_size", 1, kMaxSide);
  r.require(global_size >= patch_size, "crops.global_size",
            str_cat("at least model.patch_size (", patch_size, ")"));
  m.global = {2, int(global_size), float(gs[0]), float(gs[1])};
  // DINO allows no local crops: the two global views are then each other's pair.
  const int local_crops = int(r.integer("crops.local_crops", 0, 64));
  const auto ls = r.numbers("crops.local_scale", 2, scale);
  r.require(ls[0] <= ls[1], "crops.local_scale", "[min, max] with min <= max");
  const int64_t local_size = r.integer("crops.local_size", 1, kMaxSide);
  r.require(local_crops == 0 || local_size >= patch_size, "crops.local_size",
            str_cat("at least model.patch_size (", patch_size, ") when crops.local_crops > 0"));
  m.local = {local_crops, int(local_size), float(ls[0]), float(ls[1])};
  m.flip_p = float(r.number("crops.flip_p", kProbability));
  m.jitter_p = float(r.number("crops.jitter_p", kProbability));
  m.brightness = float(r.number("crops.brightness", kProbability));
  m.contrast = float(r.number("crops.contrast", kProbability));
  m.saturation = float(r.number("crops.saturation", kProbability));
  m.hue = float(r.number("crops.hue", Range{0, 0.5}));
  m.grayscale_p = float(r.number("crops.grayscale_p", kProbability));
  const auto blur = r.numbers("crops.blur_p", 3, kProbability);
  m.blur_p_global1 = float(blur[0]);
  m.blur_p_global2 = float(blur[1]);
  m.blur_p_local = float(blur[2]);
  const auto sigma = r.numbers("crops.blur_sigma", 2, Range{0, 100, true, false});
  r.require(sigma[0] <= sigma[1], "crops.blur_sigma", "[min, max] with min <= max");
  m.blur_sigma_min = float(sigma[0]);
  m.blur_sigma_max = float(sigma[1]);
  m.solarize_p_global2 = float(r.number("crops.solarize_p", kProbability));
  return m;
}

OptimConfig read_optim(const Reader& r) {
  OptimConfig o;
  o.batch_size = int(r.integer("optim.batch_size", 1, 1 << 20));
  o.epochs = r.number("optim.epochs", Range{0, kMaxEpochs, true, false});
  o.lr = r.number("optim.lr", Range{0, 1, true, false});
  o.min_lr = r.number("optim.min_lr", kNonNegative);
  r.require(o.min_lr <= o.scaled_lr(), "optim.min_lr",
            str_cat("at most the scaled learning rate optim.lr * optim.batch_size / 256 = ",
                    o.scaled_lr()));
  o.warmup_epochs = r.number("optim.warmup_epochs", Range{0, o.epochs});
  o.weight_decay = r.number("optim.weight_decay", kProbability);
  o.weight_decay_end = r.number("optim.weight_decay_end", kProbability);
  o.clip_grad = r.number("optim.clip_grad", kNonNegative);
  o.freeze_last_layer = r.number("optim.freeze_last_layer", kNonNegative);
  o.momentum_teacher = r.number("optim.momentum_teacher", kProbability);
  return o;
}

DinoLossConfig read_loss(const Reader& r, int64_t out_dim, double epochs) {
  DinoLossConfig c;
  c.out_dim = out_dim;
  c.global_crops = 2;
  const Range temperature{0, 10, true, false};
  c.student_temp = r.number("loss.student_temp", temperature);
  c.teacher_temp = r.number("loss.teacher_temp", temperature);
  c.warmup_teacher_temp = r.number("loss.warmup_teacher_temp", temperature);
  c.warmup_teacher_temp_epochs = r.number("loss.warmup_teacher_temp_epochs", Range{0, epochs});
  c.center_momentum = r.number("loss.center_momentum", kProbability);
  c.koleo_weight = r.number("loss.koleo_weight", kNonNegative);
  return c;
}

RunConfig read_run(const Reader& r) {
  RunConfig c;
  c.seed = uint64_t(r.integer("run.seed", 0, kMaxInt64));
  c.max_steps = r.integer("run.max_steps", 0, kMaxInt64);
  c.log_every = r.integer("run.log_every", 1, kMaxInt64);
  c.checkpoint_every = r.integer("run.checkpoint_every", 0, kMaxInt64);
  c.knn = r.boolean("run.knn");
  c.knn_k = r.integer("run.knn_k", 1, kMaxInt);
  c.knn_temperature = r.number("run.knn_temperature", Range{0, 10, true, false});
  c.eval_batch = r.integer("run.eval_batch", 1, 1 << 20);
  c.cuda_graph = r.boolean("run.cuda_graph");
  return c;
}

Recipe read_recipe(json merged, const std::string& origin) {
  Recipe recipe;
  const Reader r(merged, origin);
  recipe.data = read_data(r);
  recipe.model = read_model(r);
  recipe.head = read_head(r, recipe.model.vit.embed_dim);
  recipe.crops = read_crops(r, recipe.model.vit.patch_size);
  recipe.optim = read_optim(r);
  recipe.loss = read_loss(r, recipe.head.out_dim, recipe.optim.epochs);
  recipe.run = read_run(r);
  recipe.json = std::move(merged);
  return recipe;
}

}  // namespace

void merge_config(json& base, const json& overrides, const std::string& origin) {
  merge_into(base, overrides, origin, "");
}

void apply_override(json& cfg, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  DINO_CHECK(eq != std::string::npos && eq > 0, "[config] command line: '", assignment,
             "' is not group.key=value");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  DINO_CHECK(key.front() != '.' && key.back() != '.' && key.find("..") == std::string::npos,
             "[config] command line: '", key, "' is not a group.key name");
  json value;
  try {
    value = json::parse(text);
  } catch (const json::exception&) {
    value = text;  // a bare word, e.g. data.dataset=synthetic
  }
  json patch = value;
  size_t end = key.size();
  for (;;) {  // build {"a": {"b": value}} from "a.b"
    const size_t dot = key.rfind('.', end - 1);
    const std::string part = key.substr(dot == std::string::npos ? 0 : dot + 1,
                                        end - (dot == std::string::npos ? 0 : dot + 1));
    patch = json{{part, patch}};
    if (dot == std::string::npos) break;
    end = dot;
  }
  merge_config(cfg, patch, "command line");
}

json parse_config_text(const std::string& text, const std::string& origin) {
  json file;
  try {
    file = json::parse(text, nullptr, true, true);
  } catch (const json::exception& e) {
    throw Error(str_cat("[config] ", origin, ": not valid JSON: ", e.what()));
  }
  json cfg = default_config();
  merge_config(cfg, file, origin);
  return cfg;
}

json read_recipe_file(const std::string& path) {
  std::ifstream f(path);
  DINO_CHECK(f, "[config] cannot open recipe '", path, "'");
  try {
    return json::parse(f, nullptr, true, true);
  } catch (const json::exception& e) {
    throw Error(str_cat("[config] ", path, ": not valid JSON: ", e.what()));
  }
}

json load_config(const std::string& path, const std::vector<std::string>& overrides) {
  json cfg = default_config();
  if (!path.empty()) {
    std::ifstream f(path);
    DINO_CHECK(f, "[config] cannot open recipe '", path, "'");
    std::ostringstream text;
    text << f.rdbuf();
    DINO_CHECK(!f.bad(), "[config] cannot read recipe '", path, "'");
    cfg = parse_config_text(text.str(), path);
  }
  for (const std::string& o : overrides) apply_override(cfg, o);
  return cfg;
}

VitConfig Recipe::vit(int64_t in_chans) const {
  VitConfig v = model.vit;
  v.in_chans = in_chans;
  return v;
}

data::MultiCropConfig Recipe::crops_for(int channels) const {
  data::MultiCropConfig m = crops;
  m.norm = data::default_normalization(channels);
  return m;
}

Recipe parse_recipe(const json& cfg, const std::string& origin) {
  json merged = default_config();
  merge_config(merged, cfg, origin);
  return read_recipe(std::move(merged), origin);
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string file = path.empty() ? "recipe" : path;
  return parse_recipe(load_config(path, overrides),
                      overrides.empty() ? file : file + " with the command line's overrides");
}

Recipe parse_saved_recipe(const json& saved, const std::string& origin) {
  // Keys added after checkpoints were first written, with the value every run before them
  // had: such a checkpoint still loads, and a key missing for any other reason is an error.
  static const std::pair<const char*, const char*> added[] = {
      {"data", "augment"}, {"model", "init_from"}, {"loss", "koleo_weight"}, {"run", "cuda_graph"}};
  static const json before[] = {"cpu", "", 0.0, false};
  json cfg = saved;
  for (size_t i = 0; i < std::size(added); ++i)
    if (cfg.contains(added[i].first) && cfg[added[i].first].is_object() &&
        !cfg[added[i].first].contains(added[i].second))
      cfg[added[i].first][added[i].second] = before[i];
  require_every_key(default_config(), cfg, origin, "");
  return parse_recipe(cfg, origin);
}

}  // namespace dino
