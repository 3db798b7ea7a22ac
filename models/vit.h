#pragma once
// Vision Transformer as facebookresearch/dino's vision_transformer.py builds it: patch
// embedding (strided conv), [CLS] token, learned position embeddings interpolated for other
// crop sizes, pre-norm blocks (LayerNorm eps 1e-6, exact GELU, qkv bias), stochastic depth
// rising linearly over the blocks, a final LayerNorm. Parameter names are timm's.
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"

namespace dino {

struct VitConfig {
  int64_t img_size = 224, patch_size = 16, in_chans = 3;
  int64_t embed_dim = 384, depth = 12, num_heads = 6;
  double mlp_ratio = 4.0;
  double drop_path_rate = 0.1;
  double ln_eps = 1e-6;
  bool qkv_bias = true;
  int64_t grid() const { return img_size / patch_size; }
};

// vit_tiny (192/12/3), vit_small (384/12/6), vit_base (768/12/12), and small CPU presets:
// vit_cpu (128/4/4) and vit_micro (64/2/2). Image size, patch and channels are separate.
VitConfig vit_preset(const std::string& name);
std::vector<std::string> vit_preset_names();

// The residual stream between blocks: stream plus a branch not yet added (undefined before
// the first block). The add is left to the next LayerNorm, which fuses it (add_layer_norm).
struct Residual {
  Tensor stream, branch;
};

class Block : public Module {
 public:
  Block(const VitConfig& cfg, double drop_path, Rng& rng);
  // attn_probs, when given, receives this block's attention probabilities (B, H, N, N).
  Residual forward(const Residual& x, DropPathNoise* drop, Tensor* attn_probs = nullptr) const;

  LayerNorm norm1, norm2;
  struct Attention : Module {
    Attention(const VitConfig& cfg, Rng& rng);
    Linear qkv, proj;
  } attn;
  struct Mlp : Module {
    Mlp(const VitConfig& cfg, Rng& rng);
    Linear fc1, fc2;
  } mlp;

 private:
  int64_t heads_;
  double drop_path_;
};

class VisionTransformer : public Module {
 public:
  VisionTransformer(const VitConfig& cfg, Rng& rng);
  const VitConfig& config() const { return cfg_; }

  // images (B, C, H, W) -> [CLS] after the final norm (B, D). With drop_path_rate > 0 in
  // training, drop gives the step's stochastic-depth noise (nullptr: no drop path).
  Tensor forward(const Tensor& images, DropPathNoise* drop = nullptr) const;
  // All tokens after the final norm (B, 1 + N, D).
  Tensor forward_tokens(const Tensor& images, DropPathNoise* drop = nullptr) const;
  // Softmax attention of the last block (B, H, 1 + N, 1 + N), as get_last_selfattention.
  Tensor last_self_attention(const Tensor& images) const;
  // Position embeddings for an image of h x w pixels (1, 1 + N, D), DINO's interpolation.
  Tensor interpolate_pos_encoding(int64_t h, int64_t w) const;
  // Forward FLOPs of one image of the base size (multiply-adds count 2).
  double flops_per_image(int64_t img_size) const;

  struct PatchEmbed : Module {
    PatchEmbed(const VitConfig& cfg, Rng& rng);
    struct Proj : Module {
      Tensor weight, bias;
    } proj;
  } patch_embed;
  Tensor cls_token, pos_embed;
  std::vector<std::unique_ptr<Block>> blocks;
  LayerNorm norm;

 private:
  Tensor embed(const Tensor& images) const;
  VitConfig cfg_;
};

}  // namespace dino
