#include "train/checkpoint.h"

#include <sstream>

#include "train/config.h"

namespace dino {

namespace {

constexpr const char* kFormat = "dino-engine-checkpoint-v1";

std::string rng_to_string(const Rng::State& s) {
  std::ostringstream os;
  for (uint64_t w : s) os << w << ' ';
  return os.str();
}

Rng::State rng_from_string(const std::string& text, const std::string& path) {
  Rng::State s{};
  std::istringstream is(text);
  for (auto& w : s) is >> w;
  DINO_CHECK(!is.fail(), "[", path, "] corrupt random state in the metadata");
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const DinoModel& student,
                     const DinoModel& teacher, const DinoLoss& loss, AdamW& optimizer) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& kv : student.named_parameters("student.")) tensors.push_back(kv);
  for (auto& kv : teacher.named_parameters("teacher.")) tensors.push_back(kv);
  for (auto& kv : loss.named_buffers("loss.")) tensors.push_back(kv);
  for (auto& [name, st] : optimizer.state()) {
    tensors.push_back({"optimizer." + name + ".exp_avg", st.exp_avg});
    tensors.push_back({"optimizer." + name + ".exp_avg_sq", st.exp_avg_sq});
    // float64 holds any step count exactly and needs no 64-bit integer dtype.
    tensors.push_back({"optimizer." + name + ".step", Tensor::scalar(double(st.step), DType::f64)});
  }
  save_safetensors(path, tensors,
                   {{"format", kFormat},
                    {"config", meta.config.dump()},
                    {"step", std::to_string(meta.step)},
                    {"in_chans", std::to_string(meta.in_chans)},
                    {"drop_rng", rng_to_string(meta.drop_rng)}});
}

Checkpoint read_checkpoint(const std::string& path) {
  Checkpoint ck;
  ck.path = path;
  ck.tensors = load_safetensors(path);
  const auto& md = ck.tensors.metadata;
  auto it = md.find("format");
  DINO_CHECK(it != md.end() && it->second == kFormat, "[", path,
             "] is not a dino-engine training checkpoint (no '", kFormat, "' format tag)");
  try {
    ck.meta.config = nlohmann::json::parse(md.at("config"));
    ck.meta.step = std::stoll(md.at("step"));
    ck.meta.in_chans = std::stoll(md.at("in_chans"));
  } catch (const std::exception& e) {
    throw Error(str_cat("[", path, "] corrupt checkpoint metadata: ", e.what()));
  }
  ck.meta.drop_rng = rng_from_string(md.at("drop_rng"), path);
  return ck;
}

void load_module(Module& m, const Checkpoint& ck, const std::string& prefix) {
  auto load = [&](std::vector<std::pair<std::string, Tensor>> entries) {
    for (auto& [name, t] : entries) {
      const Tensor* src = ck.tensors.find(prefix + name);
      DINO_CHECK(src, "[", ck.path, "] checkpoint of another model: no tensor '", prefix + name, "'");
      DINO_CHECK(src->shape() == t.shape(), "[", ck.path, "] checkpoint of another model: '",
                 prefix + name, "' is ", shape_str(src->shape()), ", this model needs ",
                 shape_str(t.shape()));
      t.copy_from(*src);
    }
  };
  load(m.named_parameters());
  load(m.named_buffers());
}

void load_optimizer(AdamW& optimizer, const Checkpoint& ck) {
  for (auto& [name, st] : optimizer.state()) {
    const std::string base = "optimizer." + name;
    const Tensor* m = ck.tensors.find(base + ".exp_avg");
    const Tensor* v = ck.tensors.find(base + ".exp_avg_sq");
    const Tensor* s = ck.tensors.find(base + ".step");
    DINO_CHECK(m && v && s, "[", ck.path, "] no optimizer state for '", name, "'");
    DINO_CHECK(m->shape() == st.exp_avg.shape(), "[", ck.path, "] optimizer state '", name,
               "' has the wrong shape");
    st.exp_avg.copy_from(*m);
    st.exp_avg_sq.copy_from(*v);
    st.step = int64_t(s->item());
  }
}

void export_backbone(const std::string& path, const VisionTransformer& vit,
                     std::map<std::string, std::string> metadata) {
  const VitConfig& c = vit.config();
  const nlohmann::json config{{"img_size", c.img_size},   {"patch_size", c.patch_size},
                              {"in_chans", c.in_chans},   {"embed_dim", c.embed_dim},
                              {"depth", c.depth},         {"num_heads", c.num_heads},
                              {"mlp_ratio", c.mlp_ratio}, {"qkv_bias", c.qkv_bias},
                              {"ln_eps", c.ln_eps}};
  // "format": "pt" is what safetensors.torch.save_file writes.
  metadata["format"] = "pt";
  metadata["dino_engine"] = "vit-backbone-v1";
  metadata["vit_config"] = config.dump();
  auto tensors = vit.named_parameters();
  for (auto& kv : vit.named_buffers()) tensors.push_back(kv);
  save_safetensors(path, tensors, metadata);
}

std::unique_ptr<DinoModel> model_from_checkpoint(const Checkpoint& ck, const std::string& which) {
  DINO_CHECK(which == "teacher" || which == "student", "[checkpoint] unknown model '", which, "'");
  const VitConfig vc = vit_config(ck.meta.config, ck.meta.in_chans);
  const HeadConfig hc = head_config(ck.meta.config, vc.embed_dim);
  Rng rng(0);  // the weights are overwritten below
  auto model = std::make_unique<DinoModel>(vc, hc, rng);
  load_module(*model, ck, which + ".");
  return model;
}

}  // namespace dino
