#pragma once
// `dino import`: ViT backbones trained elsewhere, as an engine model.
//
// Reads:
//  - facebookresearch/dino's files (.pth, read by train/import_pth.h without PyTorch): the
//    published backbone state dicts (dino_vits16, ...: patch_embed.proj.weight, cls_token,
//    pos_embed, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*) and full
//    training checkpoints ({"student", "teacher", "args", ...}, state dicts under
//    "module.backbone." / "backbone.", the DINO head under "head." left out);
//  - timm ViT safetensors (the same names; timm's classifier `head.*` left out).
// Any other tensor (LayerScale, register tokens, average pooling's fc_norm, ...) means a model
// this engine does not build, and is refused by name. The shape comes from the tensors: width
// from cls_token, patch size and channels from the patch embedding, depth from the blocks,
// image size from pos_embed, MLP ratio from fc1. The number of heads is not in any shape: it
// comes from the checkpoint's args.arch when there is one, else from the caller, else
// width / 64 (every DINO and timm ViT-Ti/S/B/L has 64-wide heads).
#include <memory>
#include <string>
#include <vector>

#include "data/augment.h"
#include "models/vit.h"

namespace dino {

struct ImportOptions {
  std::string which = "teacher";  // of a DINO training checkpoint: "teacher" or "student"
  int64_t num_heads = 0;          // 0: as above
};

struct ImportedBackbone {
  std::unique_ptr<VisionTransformer> model;  // on the CPU, in evaluation mode
  data::Normalization norm;                  // ImageNet's, which DINO and timm's ViTs use
  std::string format;      // what was read, e.g. "DINO training checkpoint (teacher)"
  std::string heads_from;  // how num_heads was decided
  std::vector<std::string>
      left_out;  // tensor groups not imported, e.g. "head.* (DINO head, 8 tensors)"
};

ImportedBackbone import_backbone(const std::string& path, const ImportOptions& options = {});

}  // namespace dino
