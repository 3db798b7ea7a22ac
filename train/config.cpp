#include "train/config.h"

#include <fstream>

#include "core/error.h"

namespace dino {

using nlohmann::json;

json default_config() {
  // facebookresearch/dino main_dino.py defaults for ViT-S/16; recipes override.
  return json{
      {"data", {{"dataset", "fashion-mnist"}, {"loader_threads", 1}}},
      {"model",
       {{"arch", "vit_small"}, {"img_size", 224}, {"patch_size", 16}, {"embed_dim", 0},
        {"depth", 0}, {"num_heads", 0}, {"drop_path_rate", 0.1}, {"attention", "ours"}}},
      {"head",
       {{"out_dim", 65536}, {"hidden_dim", 2048}, {"bottleneck_dim", 256}, {"nlayers", 3},
        {"norm_last_layer", true}}},
      {"crops",
       {{"global_size", 224}, {"global_scale", {0.4, 1.0}}, {"local_crops", 8},
        {"local_size", 96}, {"local_scale", {0.05, 0.4}}, {"flip_p", 0.5}, {"jitter_p", 0.8},
        {"brightness", 0.4}, {"contrast", 0.4}, {"saturation", 0.2}, {"hue", 0.1},
        {"grayscale_p", 0.2}, {"blur_p", {1.0, 0.1, 0.5}}, {"blur_sigma", {0.1, 2.0}},
        {"solarize_p", 0.2}}},
      {"optim",
       {{"batch_size", 64}, {"epochs", 100.0}, {"lr", 5e-4}, {"min_lr", 1e-6},
        {"warmup_epochs", 10.0}, {"weight_decay", 0.04}, {"weight_decay_end", 0.4},
        {"clip_grad", 3.0}, {"freeze_last_layer", 1.0}, {"momentum_teacher", 0.996}}},
      {"loss",
       {{"student_temp", 0.1}, {"teacher_temp", 0.04}, {"warmup_teacher_temp", 0.04},
        {"warmup_teacher_temp_epochs", 0.0}, {"center_momentum", 0.9}}},
      {"run",
       {{"seed", 0}, {"max_steps", 0}, {"log_every", 10}, {"checkpoint_every", 0},
        {"knn", true}, {"knn_k", 20}, {"knn_temperature", 0.07}, {"eval_batch", 256}}},
  };
}

namespace {

bool same_kind(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return !(a.is_number_integer() && b.is_number_float());
  return a.type() == b.type();
}

void merge_into(json& base, const json& over, const std::string& origin, const std::string& path) {
  DINO_CHECK(over.is_object(), "[config] ", origin, ": '", path.empty() ? "(top)" : path,
             "' must be an object");
  for (auto it = over.begin(); it != over.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    DINO_CHECK(base.contains(it.key()), "[config] ", origin, ": unknown key '", key, "'");
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
    slot = value;
  }
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

json load_config(const std::string& path, const std::vector<std::string>& overrides) {
  json cfg = default_config();
  if (!path.empty()) {
    std::ifstream f(path);
    DINO_CHECK(f, "[config] cannot open recipe '", path, "'");
    json file;
    try {
      file = json::parse(f, nullptr, true, true);
    } catch (const json::exception& e) {
      throw Error(str_cat("[config] ", path, ": not valid JSON: ", e.what()));
    }
    merge_config(cfg, file, path);
  }
  for (const std::string& o : overrides) apply_override(cfg, o);
  return cfg;
}

VitConfig vit_config(const json& cfg, int64_t in_chans) {
  const json& m = cfg.at("model");
  VitConfig v = vit_preset(m.at("arch").get<std::string>());
  v.img_size = m.at("img_size").get<int64_t>();
  v.patch_size = m.at("patch_size").get<int64_t>();
  if (m.at("embed_dim").get<int64_t>() > 0) v.embed_dim = m.at("embed_dim").get<int64_t>();
  if (m.at("depth").get<int64_t>() > 0) v.depth = m.at("depth").get<int64_t>();
  if (m.at("num_heads").get<int64_t>() > 0) v.num_heads = m.at("num_heads").get<int64_t>();
  v.drop_path_rate = m.at("drop_path_rate").get<double>();
  v.in_chans = in_chans;
  DINO_CHECK(v.drop_path_rate >= 0 && v.drop_path_rate < 1, "[config] model.drop_path_rate must be in [0, 1)");
  return v;
}

HeadConfig head_config(const json& cfg, int64_t embed_dim) {
  const json& h = cfg.at("head");
  HeadConfig c;
  c.in_dim = embed_dim;
  c.out_dim = h.at("out_dim").get<int64_t>();
  c.hidden_dim = h.at("hidden_dim").get<int64_t>();
  c.bottleneck_dim = h.at("bottleneck_dim").get<int64_t>();
  c.nlayers = h.at("nlayers").get<int64_t>();
  c.norm_last_layer = h.at("norm_last_layer").get<bool>();
  return c;
}

DinoLossConfig loss_config(const json& cfg) {
  const json& l = cfg.at("loss");
  DinoLossConfig c;
  c.out_dim = cfg.at("head").at("out_dim").get<int64_t>();
  c.global_crops = 2;
  c.student_temp = l.at("student_temp").get<double>();
  c.teacher_temp = l.at("teacher_temp").get<double>();
  c.warmup_teacher_temp = l.at("warmup_teacher_temp").get<double>();
  c.warmup_teacher_temp_epochs = l.at("warmup_teacher_temp_epochs").get<double>();
  c.center_momentum = l.at("center_momentum").get<double>();
  DINO_CHECK(c.student_temp > 0 && c.teacher_temp > 0 && c.warmup_teacher_temp > 0,
             "[config] temperatures must be positive");
  return c;
}

data::MultiCropConfig multicrop_config(const json& cfg, int channels) {
  const json& c = cfg.at("crops");
  data::MultiCropConfig m;
  const auto gs = c.at("global_scale").get<std::vector<float>>();
  const auto ls = c.at("local_scale").get<std::vector<float>>();
  m.global = {2, c.at("global_size").get<int>(), gs[0], gs[1]};
  m.local = {c.at("local_crops").get<int>(), c.at("local_size").get<int>(), ls[0], ls[1]};
  m.flip_p = c.at("flip_p").get<float>();
  m.jitter_p = c.at("jitter_p").get<float>();
  m.brightness = c.at("brightness").get<float>();
  m.contrast = c.at("contrast").get<float>();
  m.saturation = c.at("saturation").get<float>();
  m.hue = c.at("hue").get<float>();
  m.grayscale_p = c.at("grayscale_p").get<float>();
  const auto blur = c.at("blur_p").get<std::vector<float>>();
  m.blur_p_global1 = blur[0];
  m.blur_p_global2 = blur[1];
  m.blur_p_local = blur[2];
  const auto sigma = c.at("blur_sigma").get<std::vector<float>>();
  m.blur_sigma_min = sigma[0];
  m.blur_sigma_max = sigma[1];
  m.solarize_p_global2 = c.at("solarize_p").get<float>();
  m.norm = data::default_normalization(channels);
  data::validate(m);
  return m;
}

}  // namespace dino
