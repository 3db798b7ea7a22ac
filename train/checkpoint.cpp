#include "train/checkpoint.h"

#include <cmath>
#include <sstream>

namespace dino {

namespace {

constexpr const char* kFormat = "dino-engine-checkpoint-v1";

const std::string& metadata_value(const SafeTensors& st, const std::string& key,
                                  const std::string& path) {
  auto it = st.metadata.find(key);
  DINO_CHECK(it != st.metadata.end(), "[", path, "] corrupt checkpoint metadata: no '", key, "'");
  return it->second;
}

int64_t parse_count(const std::string& text, const std::string& key, const std::string& path) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DINO_CHECK(used == text.size() && !text.empty() && v >= 0, "[", path,
             "] corrupt checkpoint metadata: ", key, " is '", text,
             "', expected a non-negative integer");
  return v;
}

template <class T>
void count_non_finite(const T* p, int64_t n, int64_t& nan, int64_t& inf) {
  for (int64_t i = 0; i < n; ++i) {
    nan += std::isnan(double(p[i]));
    inf += std::isinf(double(p[i]));
  }
}

// Host copies of every tensor a checkpoint holds, in the order it writes them.
std::vector<std::pair<std::string, Tensor>> checkpoint_tensors(const DinoModel& student,
                                                               const DinoModel& teacher,
                                                               const DinoLoss& loss,
                                                               AdamW& optimizer) {
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
  for (auto& kv : tensors) kv.second = kv.second.to(Device::cpu);
  return tensors;
}

}  // namespace

std::string describe_non_finite(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::f32 && t.dtype() != DType::f64 && t.dtype() != DType::bf16) continue;
    const Tensor host = t.to(Device::cpu);
    int64_t nan = 0, inf = 0;
    if (host.dtype() == DType::f64) {
      count_non_finite(host.data<double>(), host.numel(), nan, inf);
    } else {
      const Tensor f = host.to(DType::f32);
      count_non_finite(f.data<float>(), f.numel(), nan, inf);
    }
    if (nan + inf > 0)
      return str_cat("'", name, "' (", nan, " NaN, ", inf, " infinite of ", t.numel(), " values)");
  }
  return "";
}

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const DinoModel& student,
                     const DinoModel& teacher, const DinoLoss& loss, AdamW& optimizer) {
  const auto tensors = checkpoint_tensors(student, teacher, loss, optimizer);
  const std::string bad = describe_non_finite(tensors);
  DINO_CHECK(bad.empty(), "[train] after step ", meta.step, " ", bad,
             " is not finite: the update diverged. Not writing ", path,
             " (a checkpoint already there is kept); lower optim.lr or check the data");
  save_safetensors(path, tensors,
                   {{"format", kFormat},
                    {"config", meta.config.dump()},
                    {"step", std::to_string(meta.step)},
                    {"in_chans", std::to_string(meta.in_chans)},
                    {"ranks", std::to_string(meta.ranks)}});
}

Checkpoint read_checkpoint(const std::string& path) {
  return read_checkpoint_from(path, load_safetensors(path));
}

Checkpoint read_checkpoint_from(const std::string& path, SafeTensors tensors) {
  Checkpoint ck;
  ck.path = path;
  ck.tensors = std::move(tensors);
  const auto& md = ck.tensors.metadata;
  auto it = md.find("format");
  DINO_CHECK(it != md.end() && it->second == kFormat, "[", path,
             "] is not a dino-engine training checkpoint (no '", kFormat, "' format tag)");
  try {
    ck.meta.config = nlohmann::json::parse(metadata_value(ck.tensors, "config", path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        str_cat("[", path, "] corrupt checkpoint metadata: config is not JSON: ", e.what()));
  }
  ck.recipe = parse_saved_recipe(ck.meta.config, path + " (its recipe)");
  ck.meta.step = parse_count(metadata_value(ck.tensors, "step", path), "step", path);
  ck.meta.in_chans = parse_count(metadata_value(ck.tensors, "in_chans", path), "in_chans", path);
  DINO_CHECK(ck.meta.in_chans == 1 || ck.meta.in_chans == 3, "[", path,
             "] corrupt checkpoint metadata: in_chans is ", ck.meta.in_chans, ", expected 1 or 3");
  // Checkpoints from before data-parallel training have no "ranks": one process made them.
  if (md.count("ranks")) ck.meta.ranks = parse_count(md.at("ranks"), "ranks", path);
  DINO_CHECK(ck.meta.ranks >= 1, "[", path, "] corrupt checkpoint metadata: ranks is ",
             ck.meta.ranks);
  return ck;
}

void load_module(Module& m, const Checkpoint& ck, const std::string& prefix) {
  auto load = [&](std::vector<std::pair<std::string, Tensor>> entries) {
    for (auto& [name, t] : entries) {
      const Tensor* src = ck.tensors.find(prefix + name);
      DINO_CHECK(src, "[", ck.path, "] checkpoint of another model: no tensor '", prefix + name,
                 "'");
      DINO_CHECK(src->shape() == t.shape() && src->dtype() == t.dtype(), "[", ck.path,
                 "] checkpoint of another model: '", prefix + name, "' is ",
                 shape_str(src->shape()), " ", dtype_name(src->dtype()), ", this model needs ",
                 shape_str(t.shape()), " ", dtype_name(t.dtype()));
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
    DINO_CHECK(m->shape() == st.exp_avg.shape() && v->shape() == st.exp_avg_sq.shape() &&
                   m->dtype() == st.exp_avg.dtype() && v->dtype() == st.exp_avg_sq.dtype(),
               "[", ck.path, "] optimizer state '", name, "' has the wrong shape or dtype");
    DINO_CHECK(s->numel() == 1 && s->dtype() == DType::f64, "[", ck.path, "] optimizer step of '",
               name, "' is not a float64 scalar");
    const double step = s->item();
    DINO_CHECK(step >= 0 && step <= 9e15 && step == std::floor(step), "[", ck.path,
               "] optimizer step of '", name, "' is ", step, ", not a step count");
    st.exp_avg.copy_from(*m);
    st.exp_avg_sq.copy_from(*v);
    st.step = int64_t(step);
  }
}

}  // namespace dino
