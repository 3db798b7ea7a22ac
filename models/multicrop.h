#pragma once
// utils.MultiCropWrapper: the backbone runs once per run of consecutive crops that share a
// resolution (the 2 global crops, then the local crops), the [CLS] outputs are concatenated
// in view order, and the head runs once over all of them.
#include <memory>
#include <vector>

#include "models/dino_head.h"
#include "models/vit.h"

namespace dino {

class DinoModel : public Module {
 public:
  DinoModel(const VitConfig& vit, const HeadConfig& head, Rng& rng);
  // crops: one (B, C, S, S) tensor per view. Returns logits (V*B, K), view-major; cls_out
  // (optional) receives the backbone's [CLS] features (V*B, D).
  Tensor forward(const std::vector<Tensor>& crops, DropPathNoise* drop = nullptr,
                 Tensor* cls_out = nullptr) const;

  VisionTransformer backbone;
  DinoHead head;
};

// teacher <- m * teacher + (1 - m) * student, parameter by parameter (same names). Not
// recorded by autograd.
void ema_update(DinoModel& teacher, const DinoModel& student, double momentum);

}  // namespace dino
