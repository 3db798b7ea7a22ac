#include "models/multicrop.h"

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

DinoModel::DinoModel(const VitConfig& vit, const HeadConfig& head_cfg, Rng& rng)
    : backbone(vit, rng), head(head_cfg, rng) {
  register_module("backbone", &backbone);
  register_module("head", &head);
}

Tensor DinoModel::forward(const std::vector<Tensor>& crops, DropPathNoise* drop,
                          Tensor* cls_out) const {
  DINO_CHECK(!crops.empty(), "[multicrop] no crops");
  std::vector<Tensor> feats;
  size_t start = 0;
  while (start < crops.size()) {
    size_t end = start + 1;
    while (end < crops.size() && crops[end].size(-1) == crops[start].size(-1) &&
           crops[end].size(-2) == crops[start].size(-2))
      ++end;
    std::vector<Tensor> group(crops.begin() + long(start), crops.begin() + long(end));
    feats.push_back(backbone.forward(group.size() == 1 ? group[0] : concat(group), drop));
    start = end;
  }
  Tensor cls = feats.size() == 1 ? feats[0] : concat(feats);
  if (cls_out) *cls_out = cls;
  return head.forward(cls);
}

void ema_update(DinoModel& teacher, const DinoModel& student, double momentum) {
  NoGradGuard no_grad;
  auto t = teacher.named_parameters(), s = student.named_parameters();
  DINO_CHECK(t.size() == s.size(), "[ema] teacher has ", t.size(), " parameters, student ",
             s.size());
  for (size_t i = 0; i < t.size(); ++i) {
    DINO_CHECK(t[i].first == s[i].first && t[i].second.shape() == s[i].second.shape(),
               "[ema] parameter mismatch: ", t[i].first, " vs ", s[i].first);
    DINO_CHECK(t[i].second.device() == s[i].second.device(), "[ema] teacher '", t[i].first,
               "' is on ", device_name(t[i].second.device()), ", the student's on ",
               device_name(s[i].second.device()));
    DINO_CHECK(t[i].second.device() == t[0].second.device(),
               "[ema] the teacher's parameters "
               "are on more than one device; move the whole model (Module::to)");
    DINO_CHECK(t[i].second.dtype() == DType::f32 && s[i].second.dtype() == DType::f32,
               "[ema] teacher '", t[i].first, "' is ", t[i].second.str(), ", student ",
               s[i].second.str(), "; both must be f32");
  }
  // Where the GEMMs read bf16 copies of the weights (CUDA), the teacher's are written by the
  // same pass: each copy buffer is made once and then rewritten in place every step.
  std::vector<EmaUpdate> updates;
  for (size_t i = 0; i < t.size(); ++i) {
    const Tensor& tp = t[i].second;
    Tensor copy;
    if (precision::gemm_operand(tp) != tp.dtype()) {
      copy = tp.impl()->bf16_copy;
      if (!copy.defined() || copy.shape() != tp.shape() || copy.device() != tp.device())
        copy = Tensor::empty(tp.shape(), DType::bf16, tp.device());
    }
    updates.push_back({tp, s[i].second, copy});
  }
  if (updates.empty()) return;
  backend(updates[0].teacher.device(), "ema").ema(updates, momentum);
  for (EmaUpdate& u : updates) {
    u.teacher.mark_modified();
    if (u.teacher_bf16.defined()) u.teacher.set_bf16_copy(u.teacher_bf16);
  }
}

}  // namespace dino
