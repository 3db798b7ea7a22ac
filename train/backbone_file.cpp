#include "train/backbone_file.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace dino {

namespace {

constexpr const char* kBackboneFormat = "vit-backbone-v1";

nlohmann::json vit_config_json(const VitConfig& c) {
  return {{"img_size", c.img_size},   {"patch_size", c.patch_size}, {"in_chans", c.in_chans},
          {"embed_dim", c.embed_dim}, {"depth", c.depth},           {"num_heads", c.num_heads},
          {"mlp_ratio", c.mlp_ratio}, {"qkv_bias", c.qkv_bias},     {"ln_eps", c.ln_eps}};
}

VitConfig vit_config_from_json(const nlohmann::json& j) {
  VitConfig c;
  c.img_size = j.at("img_size").get<int64_t>();
  c.patch_size = j.at("patch_size").get<int64_t>();
  c.in_chans = j.at("in_chans").get<int64_t>();
  c.embed_dim = j.at("embed_dim").get<int64_t>();
  c.depth = j.at("depth").get<int64_t>();
  c.num_heads = j.at("num_heads").get<int64_t>();
  c.mlp_ratio = j.at("mlp_ratio").get<double>();
  c.qkv_bias = j.at("qkv_bias").get<bool>();
  c.ln_eps = j.at("ln_eps").get<double>();
  c.drop_path_rate = 0;
  return c;
}

// Copies every parameter and buffer of `m` from `tensors` under `prefix`; `who` names the
// file in the messages.
void copy_weights(Module& m, const SafeTensors& tensors, const std::string& prefix,
                  const std::string& who) {
  auto entries = m.named_parameters();
  for (auto& kv : m.named_buffers()) entries.push_back(kv);
  for (auto& [name, t] : entries) {
    const Tensor* src = tensors.find(prefix + name);
    DINO_CHECK(src, "[", who, "] no tensor '", prefix + name, "'");
    DINO_CHECK(src->shape() == t.shape(), "[", who, "] '", prefix + name, "' is ",
               shape_str(src->shape()), ", the model needs ", shape_str(t.shape()));
    t.copy_from(*src);
  }
}

std::vector<float> json_floats(const std::map<std::string, std::string>& md, const char* key,
                               const std::string& path) {
  const auto it = md.find(key);
  if (it == md.end()) return {};
  try {
    return nlohmann::json::parse(it->second).get<std::vector<float>>();
  } catch (const std::exception& e) {
    throw Error(
        str_cat("[", path, "] metadata '", key, "' is not a list of numbers: ", it->second));
  }
}

// Each value with the fewest digits that read back as the same float ("0.286", not
// "0.28600001335144043").
nlohmann::json short_floats(const std::vector<float>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (float v : values) {
    char buf[32];
    for (int digits = 6; digits <= 9; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
      if (std::strtof(buf, nullptr) == v) break;
    }
    out.push_back(std::strtod(buf, nullptr));
  }
  return out;
}

}  // namespace

std::string timm_model_name(const VitConfig& c) {
  if (c.mlp_ratio != 4.0 || !c.qkv_bias || c.in_chans != 3) return "";
  struct Family {
    const char* name;
    int64_t dim, depth, heads;
    std::vector<std::pair<int64_t, int64_t>> patch_img;  // the ones timm registers
  };
  static const Family families[] = {
      {"vit_tiny", 192, 12, 3, {{16, 224}, {16, 384}}},
      {"vit_small", 384, 12, 6, {{8, 224}, {16, 224}, {16, 384}, {32, 224}, {32, 384}}},
      {"vit_base", 768, 12, 12, {{8, 224}, {16, 224}, {16, 384}, {32, 224}, {32, 384}}},
      {"vit_large", 1024, 24, 16, {{14, 224}, {16, 224}, {16, 384}, {32, 224}, {32, 384}}},
  };
  for (const Family& f : families) {
    if (f.dim != c.embed_dim || f.depth != c.depth || f.heads != c.num_heads) continue;
    for (auto [p, s] : f.patch_img)
      if (p == c.patch_size && s == c.img_size) return str_cat(f.name, "_patch", p, "_", s);
  }
  return "";
}

std::map<std::string, std::string> model_metadata(const VitConfig& c,
                                                  const data::Normalization& norm) {
  const data::Normalization n = data::resolve_normalization(norm, int(c.in_chans));
  // timm's VisionTransformer takes these names; num_classes=0 leaves its classifier out.
  const nlohmann::json timm_kwargs{
      {"img_size", c.img_size},   {"patch_size", c.patch_size}, {"in_chans", c.in_chans},
      {"embed_dim", c.embed_dim}, {"depth", c.depth},           {"num_heads", c.num_heads},
      {"mlp_ratio", c.mlp_ratio}, {"qkv_bias", c.qkv_bias},     {"num_classes", 0}};
  return {{"vit_config", vit_config_json(c).dump()},    {"mean", short_floats(n.mean).dump()},
          {"std", short_floats(n.std).dump()},          {"img_size", std::to_string(c.img_size)},
          {"patch_size", std::to_string(c.patch_size)}, {"timm_model", timm_model_name(c)},
          {"timm_kwargs", timm_kwargs.dump()}};
}

void export_backbone(const std::string& path, const VisionTransformer& vit,
                     std::map<std::string, std::string> metadata, const data::Normalization& norm) {
  for (auto& kv : model_metadata(vit.config(), norm)) metadata[kv.first] = kv.second;
  metadata["format"] = "pt";  // what safetensors.torch.save_file writes
  metadata["dino_engine"] = kBackboneFormat;
  auto tensors = vit.named_parameters();
  for (auto& kv : vit.named_buffers()) tensors.push_back(kv);
  for (auto& kv : tensors) kv.second = kv.second.to(Device::cpu);
  const std::string bad = describe_non_finite(tensors);
  DINO_CHECK(bad.empty(), "[export] ", bad, " is not finite; not writing ", path);
  save_safetensors(path, tensors, metadata);
}

Backbone load_backbone(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DINO_CHECK(fs::exists(path, ec), "[", path, "] checkpoint not found");
  DINO_CHECK(!fs::is_directory(path, ec), "[", path,
             "] is a directory, not a checkpoint file "
             "(`dino train` writes OUT/checkpoint.safetensors)");
  SafeTensors file = load_safetensors(path);
  Backbone b;
  b.path = path;
  b.metadata = file.metadata;
  const auto& md = file.metadata;
  const auto tag = md.find("dino_engine");
  Rng unused(0);  // every weight is overwritten below
  if (tag != md.end()) {
    DINO_CHECK(tag->second == kBackboneFormat, "[", path, "] backbone file of an unknown version '",
               tag->second, "' (this build reads ", kBackboneFormat, ")");
    VitConfig vc;
    try {
      vc = vit_config_from_json(nlohmann::json::parse(md.at("vit_config")));
      if (md.count("step")) b.step = std::stoll(md.at("step"));
    } catch (const std::exception& e) {
      throw Error(str_cat("[", path, "] corrupt backbone metadata: ", e.what()));
    }
    b.model = std::make_unique<VisionTransformer>(vc, unused);
    copy_weights(*b.model, file, "", path);
    // Files written before the normalisation was recorded used the default.
    b.norm = data::resolve_normalization(
        {json_floats(md, "mean", path), json_floats(md, "std", path)}, int(vc.in_chans));
  } else {
    Checkpoint ck;
    try {
      ck = read_checkpoint_from(path, std::move(file));
    } catch (const Error& e) {
      throw Error(str_cat(e.what(),
                          "; nor a backbone file (`dino export`); DINO's .pth "
                          "files and timm's safetensors load after `dino import`"));
    }
    b.from_training_checkpoint = true;
    b.step = ck.meta.step;
    b.recipe = ck.recipe;
    b.model = std::make_unique<VisionTransformer>(ck.recipe.vit(ck.meta.in_chans), unused);
    copy_weights(*b.model, ck.tensors, "teacher.backbone.", path);
    b.norm = data::default_normalization(int(ck.meta.in_chans));
  }
  const std::string bad = describe_non_finite(b.model->named_parameters());
  DINO_CHECK(bad.empty(), "[", path, "] ", b.from_training_checkpoint ? "the teacher's " : "", bad,
             " is not finite: nothing can be computed from this file");
  b.model->train(false);
  return b;
}

void init_backbone_from(VisionTransformer& dst, const std::string& path) {
  const Backbone src = load_backbone(path);
  const VitConfig &a = src.model->config(), &b = dst.config();
  auto same = [&](const char* key, auto file_value, auto recipe_value) {
    DINO_CHECK(file_value == recipe_value, "[config] model.init_from=", path, ": the file's ", key,
               " is ", file_value, ", the recipe's ", recipe_value, "; set ", key, "=", file_value,
               " (or use another file)");
  };
  same("model.embed_dim", a.embed_dim, b.embed_dim);
  same("model.depth", a.depth, b.depth);
  same("model.num_heads", a.num_heads, b.num_heads);
  same("model.patch_size", a.patch_size, b.patch_size);
  same("model.img_size", a.img_size, b.img_size);
  DINO_CHECK(a.in_chans == b.in_chans, "[config] model.init_from=", path,
             ": the file's model takes ", a.in_chans, "-channel images, the recipe's dataset has ",
             b.in_chans);
  DINO_CHECK(a.mlp_ratio == b.mlp_ratio && a.qkv_bias == b.qkv_bias && a.ln_eps == b.ln_eps,
             "[config] model.init_from=", path, ": the file's blocks (mlp_ratio ", a.mlp_ratio,
             ", qkv_bias ", a.qkv_bias, ", LayerNorm eps ", a.ln_eps,
             ") differ from the recipe's (", b.mlp_ratio, ", ", b.qkv_bias, ", ", b.ln_eps, ")");
  auto from = src.model->named_parameters();
  auto to = dst.named_parameters();
  DINO_CHECK(from.size() == to.size(), "[", path, "] ", from.size(), " tensors, the model has ",
             to.size());
  for (size_t i = 0; i < to.size(); ++i) to[i].second.copy_from(from[i].second);
}

}  // namespace dino
