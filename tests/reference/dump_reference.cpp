// Writes the engine side of the PyTorch cross-check (tests/reference/dino_reference.py, whose
// module docstring is the contract): a small DINO model in float32, two dino_step calls (the
// step the trainer runs), the teacher backbone export and features computed from it.
//
//   dino_reference_dump DIR
//
// The setting and the init follow fixture.py (fixture.CONFIG and make_fixture), so that every
// part of the step acts measurably: see the contract for why the init is not DINO's.
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "train/backbone_file.h"
#include "train/checkpoint.h"
#include "train/step.h"

namespace {

using namespace dino;
using Named = std::vector<std::pair<std::string, Tensor>>;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// fixture.make_fixture's init. patch_embed.proj.weight and last_layer.weight_v keep their
// default U(+-1/sqrt(fan_in)) and weight_g stays 1, as in the fixture.
void fixture_init(DinoModel& model, Rng& rng) {
  for (auto& [name, p] : model.named_parameters()) {
    float* d = p.data<float>();
    const int64_t n = p.numel();
    if (ends_with(name, ".bias") || name.find(".norm") != std::string::npos) {
      // Off 0 and 1, or weight decay on them and swapped LayerNorm parameters cannot show.
      for (int64_t i = 0; i < n; ++i) d[i] += float(0.1 * rng.normal());
    } else if (ends_with(name, "pos_embed") || ends_with(name, "cls_token")) {
      // Large enough to reach the output, so the interpolation is measured.
      for (int64_t i = 0; i < n; ++i) d[i] = float(0.5 * rng.normal());
    } else if (starts_with(name, "head.mlp") || name.find(".attn.") != std::string::npos ||
               name.find(".mlp.") != std::string::npos) {
      // N(0, 1/fan_in): GELU inputs O(1), where erf and tanh GELU differ.
      const double std = 1.0 / std::sqrt(double(p.size(1)));
      for (int64_t i = 0; i < n; ++i) d[i] = float(std * rng.normal());
    }
  }
}

Named prefixed(const Named& tensors, const std::string& prefix) {
  Named out;
  for (const auto& [name, t] : tensors) out.push_back({prefix + name, t});
  return out;
}

void append(Named& to, const Named& from) { to.insert(to.end(), from.begin(), from.end()); }

int run(const std::string& dir) {
  const nlohmann::json cfg = {
      {"model",
       {{"img_size", 16},
        {"patch_size", 4},
        {"in_chans", 3},
        {"embed_dim", 32},
        {"depth", 2},
        {"num_heads", 2},
        {"mlp_ratio", 4.0},
        {"qkv_bias", true},
        {"ln_eps", 1e-6},
        {"drop_path_rate", 0.0}}},
      {"head",
       {{"out_dim", 64},
        {"hidden_dim", 48},
        {"bottleneck_dim", 16},
        {"nlayers", 3},
        {"norm_last_layer", false}}},
      {"loss", {{"student_temp", 0.1}, {"center_momentum", 0.9}}},
      {"crops",
       {{"global", 2}, {"views", 4}, {"global_size", 16}, {"local_size", 8}, {"batch", 3}}},
      {"steps",
       {{{"lr", 5e-4},
         {"weight_decay", 0.3},
         {"teacher_temp", 0.04},
         {"teacher_momentum", 0.9},
         {"clip_grad", 3.0},
         {"freeze_last_layer", false}},
        {{"lr", 4e-4},
         {"weight_decay", 0.4},
         {"teacher_temp", 0.05},
         {"teacher_momentum", 0.8},
         {"clip_grad", 3.0},
         {"freeze_last_layer", true},
         {"koleo_weight", 0.5}}}},
      {"adamw", {{"betas", {0.9, 0.999}}, {"eps", 1e-8}}}};

  const auto& m = cfg["model"];
  VitConfig vit;
  vit.img_size = m["img_size"];
  vit.patch_size = m["patch_size"];
  vit.in_chans = m["in_chans"];
  vit.embed_dim = m["embed_dim"];
  vit.depth = m["depth"];
  vit.num_heads = m["num_heads"];
  vit.mlp_ratio = m["mlp_ratio"];
  vit.qkv_bias = m["qkv_bias"];
  vit.ln_eps = m["ln_eps"];
  vit.drop_path_rate = m["drop_path_rate"];
  const auto& h = cfg["head"];
  HeadConfig head;
  head.in_dim = vit.embed_dim;
  head.out_dim = h["out_dim"];
  head.hidden_dim = h["hidden_dim"];
  head.bottleneck_dim = h["bottleneck_dim"];
  head.nlayers = h["nlayers"];
  head.norm_last_layer = h["norm_last_layer"];
  DinoLossConfig loss_cfg;
  loss_cfg.out_dim = head.out_dim;
  loss_cfg.global_crops = cfg["crops"]["global"];
  loss_cfg.student_temp = cfg["loss"]["student_temp"];
  loss_cfg.center_momentum = cfg["loss"]["center_momentum"];
  // make_optimizer builds AdamW with its defaults; the config states them for the reference.
  DINO_CHECK(cfg["adamw"]["betas"][0] == 0.9 && cfg["adamw"]["betas"][1] == 0.999 &&
                 cfg["adamw"]["eps"] == 1e-8,
             "[reference] the config's AdamW settings must be make_optimizer's");

  Rng rng(1234);
  DinoModel student(vit, head, rng), teacher(vit, head, rng);
  fixture_init(student, rng);
  {
    auto s = student.named_parameters(), t = teacher.named_parameters();
    for (size_t i = 0; i < s.size(); ++i) t[i].second.copy_from(s[i].second);
  }
  DinoLoss loss(loss_cfg, 1);
  // A nonzero center, so centering is observable in the teacher's targets.
  loss.center.copy_from(Tensor::randn({1, head.out_dim}, rng, 0.1));
  AdamW optimizer = make_optimizer(student);

  Named init = prefixed(student.named_parameters(), "student.");
  append(init, prefixed(teacher.named_parameters(), "teacher."));
  init.push_back({"loss.center", loss.center});
  save_safetensors(dir + "/init.safetensors", init);

  const auto& crops = cfg["crops"];
  const int64_t G = crops["global"], V = crops["views"], B = crops["batch"];
  const int64_t C = vit.in_chans, global = crops["global_size"], local = crops["local_size"];
  for (size_t index = 0; index < cfg["steps"].size(); ++index) {
    const auto& js = cfg["steps"][index];
    StepSettings s;
    s.lr = js["lr"];
    s.weight_decay = js["weight_decay"];
    s.teacher_temp = js["teacher_temp"];
    s.teacher_momentum = js["teacher_momentum"];
    s.clip_grad = js["clip_grad"];
    s.freeze_last_layer = js["freeze_last_layer"];
    s.koleo_weight = js.value("koleo_weight", 0.0);
    std::vector<Tensor> views;
    for (int64_t v = 0; v < V; ++v) {
      const int64_t size = v < G ? global : local;
      views.push_back(Tensor::randn({B, C, size, size}, rng));
    }
    StepOutputs out = dino_step(student, teacher, loss, optimizer, views, s, nullptr, true);

    Named file;
    for (int64_t v = 0; v < V; ++v)
      file.push_back({"batch.view" + std::to_string(v), views[size_t(v)]});
    file.push_back({"out.student_cls", out.student_cls});
    file.push_back({"out.teacher_cls", out.teacher_cls});
    file.push_back({"out.student_logits", out.student_logits});
    file.push_back({"out.teacher_logits", out.teacher_logits});
    file.push_back({"out.loss", out.loss.reshape({1})});
    file.push_back({"out.center_after", loss.center});
    append(file, prefixed(out.grads, "grad."));
    append(file, prefixed(student.named_parameters(), "after.student."));
    append(file, prefixed(teacher.named_parameters(), "after.teacher."));
    save_safetensors(dir + "/step" + std::to_string(index + 1) + ".safetensors", file);
  }

  // The same function `dino export` runs.
  export_backbone(dir + "/export.safetensors", teacher.backbone);

  // Features from the exported file, read back by the loader every evaluation uses, so the
  // check covers the file and not only the in-memory teacher.
  const Backbone exported = load_backbone(dir + "/export.safetensors");
  Tensor images = Tensor::randn({3, C, vit.img_size, vit.img_size}, rng);
  Tensor features;
  {
    NoGradGuard no_grad;
    features = exported.model->forward(images);
  }
  save_safetensors(dir + "/export_check.safetensors", {{"images", images}, {"features", features}});

  std::ofstream(dir + "/config.json") << cfg.dump(1) << "\n";
  std::cout << "reference dump written to " << dir << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: dino_reference_dump DIR\n";
    return 2;
  }
  try {
    return run(argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "dino_reference_dump: " << e.what() << "\n";
    return 1;
  }
}
