#include "models/multicrop.h"

#include "core/autograd.h"

namespace dino {

DinoModel::DinoModel(const VitConfig& vit, const HeadConfig& head_cfg, Rng& rng)
    : backbone(vit, rng), head(head_cfg, rng) {
  register_module("backbone", &backbone);
  register_module("head", &head);
}

Tensor DinoModel::forward(const std::vector<Tensor>& crops, Rng* drop_rng, Tensor* cls_out) const {
  DINO_CHECK(!crops.empty(), "[multicrop] no crops");
  std::vector<Tensor> feats;
  size_t start = 0;
  while (start < crops.size()) {
    size_t end = start + 1;
    while (end < crops.size() && crops[end].size(-1) == crops[start].size(-1) &&
           crops[end].size(-2) == crops[start].size(-2))
      ++end;
    std::vector<Tensor> group(crops.begin() + long(start), crops.begin() + long(end));
    feats.push_back(backbone.forward(group.size() == 1 ? group[0] : concat(group), drop_rng));
    start = end;
  }
  Tensor cls = feats.size() == 1 ? feats[0] : concat(feats);
  if (cls_out) *cls_out = cls;
  return head.forward(cls);
}

void ema_update(DinoModel& teacher, const DinoModel& student, double momentum) {
  NoGradGuard no_grad;
  auto t = teacher.named_parameters(), s = student.named_parameters();
  DINO_CHECK(t.size() == s.size(), "[ema] teacher has ", t.size(), " parameters, student ", s.size());
  for (size_t i = 0; i < t.size(); ++i) {
    DINO_CHECK(t[i].first == s[i].first && t[i].second.shape() == s[i].second.shape(),
               "[ema] parameter mismatch: ", t[i].first, " vs ", s[i].first);
    Tensor& tp = t[i].second;
    const Tensor& sp = s[i].second;
    DINO_CHECK(tp.device() == Device::cpu, "[ema] has no CUDA implementation yet");
    float* a = tp.data<float>();
    const float* b = sp.data<float>();
    const int64_t n = tp.numel();
    const float m = float(momentum), one_m = float(1.0 - momentum);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) a[j] = a[j] * m + one_m * b[j];
  }
}

}  // namespace dino
