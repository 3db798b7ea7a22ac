#include "models/multicrop.h"

#include "core/autograd.h"
#include "core/ops_util.h"

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

namespace {

// CUDA: one launch of the fused EMA (kernels/cuda/optimizer.cu) over every parameter pair. It
// also writes each teacher parameter's bf16 copy, which the teacher's GEMMs read next step.
void ema_update_cuda(const std::vector<std::pair<std::string, Tensor>>& t,
                     const std::vector<std::pair<std::string, Tensor>>& s, double momentum) {
#ifdef DINO_HAS_CUDA
  namespace cu = kernels::cuda;
  std::vector<cu::EmaTensor> desc;
  std::vector<Tensor> copies;
  for (size_t i = 0; i < t.size(); ++i) {
    const Tensor& tp = t[i].second;
    const Tensor& sp = s[i].second;
    DINO_CHECK(tp.device() == Device::cuda && sp.device() == Device::cuda &&
                   tp.dtype() == DType::f32 && sp.dtype() == DType::f32,
               "[ema] teacher '", t[i].first, "' is ", tp.str(), ", student ", sp.str(),
               "; both must be f32 on the same device");
    // The teacher's bf16 copy buffer, made once and then rewritten in place every step. The
    // kernel writes every element, so a stale cached copy serves as well as a fresh one.
    Tensor copy = tp.impl()->bf16_copy;
    if (!copy.defined() || copy.shape() != tp.shape() || copy.device() != Device::cuda)
      copy = Tensor::empty(tp.shape(), DType::bf16, Device::cuda);
    desc.push_back({detail::f32_ptr(tp), detail::f32_ptr(sp), detail::bf16_ptr(copy), tp.numel()});
    copies.push_back(copy);
  }
  if (desc.empty()) return;
  const size_t bytes = desc.size() * sizeof(cu::EmaTensor);
  // Freed stream-ordered after the launch that reads it.
  Tensor ddesc = Tensor::empty({int64_t(bytes)}, DType::u8, Device::cuda);
  cu::copy_h2d(ddesc.raw_data(), desc.data(), bytes);
  cu::ema_update(static_cast<const cu::EmaTensor*>(ddesc.raw_data()), int(desc.size()), momentum,
                 detail::cuda_stream());
  for (size_t i = 0; i < t.size(); ++i) {
    Tensor tp = t[i].second;
    tp.mark_modified();
    tp.set_bf16_copy(copies[i]);
  }
#else
  throw Error("[ema] this build has no CUDA support");
#endif
}

}  // namespace

void ema_update(DinoModel& teacher, const DinoModel& student, double momentum) {
  NoGradGuard no_grad;
  auto t = teacher.named_parameters(), s = student.named_parameters();
  DINO_CHECK(t.size() == s.size(), "[ema] teacher has ", t.size(), " parameters, student ", s.size());
  bool cuda = false;
  for (size_t i = 0; i < t.size(); ++i) {
    DINO_CHECK(t[i].first == s[i].first && t[i].second.shape() == s[i].second.shape(),
               "[ema] parameter mismatch: ", t[i].first, " vs ", s[i].first);
    DINO_CHECK(t[i].second.device() == s[i].second.device(), "[ema] teacher '", t[i].first,
               "' is on ", device_name(t[i].second.device()), ", the student's on ",
               device_name(s[i].second.device()));
    cuda = cuda || t[i].second.device() == Device::cuda;
  }
  if (cuda) return ema_update_cuda(t, s, momentum);
  for (size_t i = 0; i < t.size(); ++i) {
    Tensor& tp = t[i].second;
    const Tensor& sp = s[i].second;
    float* a = tp.data<float>();
    const float* b = sp.data<float>();
    const int64_t n = tp.numel();
    const float m = float(momentum), one_m = float(1.0 - momentum);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) a[j] = a[j] * m + one_m * b[j];
    tp.mark_modified();
  }
}

}  // namespace dino
