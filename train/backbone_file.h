#pragma once
// Backbone files and the one loader behind every use of trained weights (k-NN, embeddings,
// attention maps, model.init_from).
//
// A backbone file (`dino export`, `dino import`) is safetensors holding the ViT alone under
// timm's bare names (patch_embed.proj.weight, cls_token, pos_embed, blocks.N..., norm.*), the
// file a timm-style ViT loads with strict=True. Its metadata holds all a reader needs:
//   dino_engine    "vit-backbone-v1"
//   vit_config     {"img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
//                   "mlp_ratio", "qkv_bias", "ln_eps"} (JSON)
//   mean, std      the per-channel input normalisation, JSON arrays; inputs are images in
//                  [0, 1], resized and centre-cropped to img_size (data/augment.h's
//                  eval_transform), then (x - mean) / std
//   img_size, patch_size   copies of vit_config's, for readers that look no further
//   timm_model     timm's name for this shape ("vit_small_patch16_224"), or "" when it has none
//   timm_kwargs    timm.models.vision_transformer.VisionTransformer(**kwargs) builds this shape
//   format         "pt", as safetensors.torch writes it
// plus where the weights came from (source, step, ...).
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "data/augment.h"
#include "models/vit.h"
#include "train/config.h"

namespace dino {

// The metadata above that describes the model and its inputs (vit_config, mean, std,
// img_size, patch_size, timm_model, timm_kwargs); norm empty: the default for the channels.
std::map<std::string, std::string> model_metadata(const VitConfig& c,
                                                  const data::Normalization& norm);

// norm empty: the default for the model's channels (what training normalised with). Throws,
// writing nothing, when a weight is not finite.
void export_backbone(const std::string& path, const VisionTransformer& vit,
                     std::map<std::string, std::string> metadata = {},
                     const data::Normalization& norm = {});

struct Backbone {
  std::unique_ptr<VisionTransformer> model;  // on the CPU, in evaluation mode
  data::Normalization norm;                  // resolved for the model's channels
  std::string path;
  bool from_training_checkpoint = false;  // else a backbone file
  int64_t step = -1;                      // optimizer steps; -1 when the file does not say
  Recipe recipe;                          // the training recipe; for a training checkpoint only
  std::map<std::string, std::string> metadata;  // the file's safetensors metadata
};

// A training checkpoint (its teacher backbone) or a backbone file. Throws naming the file
// when it is missing, a directory, damaged, or neither (DINO and timm weights: `dino import`),
// and when a weight is not finite: nothing could be computed from it.
Backbone load_backbone(const std::string& path);

// Copies a backbone's weights into `dst` (model.init_from): every tensor must exist with the
// same shape, and the error names the recipe key that differs.
void init_backbone_from(VisionTransformer& dst, const std::string& path);

// timm's model name for a ViT of this shape ("vit_small_patch16_224"), "" when timm has none.
std::string timm_model_name(const VitConfig& c);

}  // namespace dino
