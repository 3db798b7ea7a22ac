#include "models/vit.h"

#include <cmath>

#include "core/rng.h"

namespace dino {

VitConfig vit_preset(const std::string& name) {
  VitConfig c;
  if (name == "vit_tiny") {
    c.embed_dim = 192;
    c.depth = 12;
    c.num_heads = 3;
  } else if (name == "vit_small") {
    c.embed_dim = 384;
    c.depth = 12;
    c.num_heads = 6;
  } else if (name == "vit_base") {
    c.embed_dim = 768;
    c.depth = 12;
    c.num_heads = 12;
  } else if (name == "vit_cpu") {
    c.embed_dim = 128;
    c.depth = 4;
    c.num_heads = 4;
  } else if (name == "vit_micro") {
    c.embed_dim = 64;
    c.depth = 2;
    c.num_heads = 2;
  } else {
    std::string known;
    for (const auto& n : vit_preset_names()) known += " " + n;
    throw Error(str_cat("[vit] unknown preset '", name, "'; known:", known));
  }
  return c;
}

std::vector<std::string> vit_preset_names() {
  return {"vit_tiny", "vit_small", "vit_base", "vit_cpu", "vit_micro"};
}

Block::Attention::Attention(const VitConfig& cfg, Rng& rng)
    : qkv(cfg.embed_dim, 3 * cfg.embed_dim, cfg.qkv_bias, rng),
      proj(cfg.embed_dim, cfg.embed_dim, true, rng) {
  register_module("qkv", &qkv);
  register_module("proj", &proj);
}

Block::Mlp::Mlp(const VitConfig& cfg, Rng& rng)
    : fc1(cfg.embed_dim, int64_t(double(cfg.embed_dim) * cfg.mlp_ratio), true, rng),
      fc2(int64_t(double(cfg.embed_dim) * cfg.mlp_ratio), cfg.embed_dim, true, rng) {
  register_module("fc1", &fc1);
  register_module("fc2", &fc2);
}

Block::Block(const VitConfig& cfg, double drop_path_p, Rng& rng)
    : norm1(cfg.embed_dim, cfg.ln_eps),
      norm2(cfg.embed_dim, cfg.ln_eps),
      attn(cfg, rng),
      mlp(cfg, rng),
      heads_(cfg.num_heads),
      drop_path_(drop_path_p) {
  register_module("norm1", &norm1);
  register_module("attn", &attn);
  register_module("norm2", &norm2);
  register_module("mlp", &mlp);
}

namespace {

// norm(stream + branch), and the sum as the new stream.
AddNorm add_norm(const Residual& r, const LayerNorm& norm) {
  if (!r.branch.defined()) return {r.stream, norm.forward(r.stream)};
  return add_layer_norm(r.stream, r.branch, norm.weight, norm.bias, norm.eps());
}

}  // namespace

Residual Block::forward(const Residual& x, DropPathNoise* drop, Tensor* attn_probs) const {
  const bool dropping = drop && drop_path_ > 0 && is_training();
  // proj and fc2 with their drop path as one node when dropping: its backward sums the Linear's
  // bias gradient in the drop-path-backward pass. The call order (proj's, then fc2's) is
  // unchanged, and so are the masks.
  const auto branch = [&](const Linear& l, const Tensor& t) {
    return dropping ? l.forward_drop_path(t, drop_path_, *drop) : l.forward(t);
  };
  const AddNorm in = add_norm(x, norm1);
  Tensor a = branch(attn.proj, attention(attn.qkv.forward(in.normed), heads_, attn_probs));
  const AddNorm mid = add_norm({in.sum, a}, norm2);
  // fc1 and its GELU as one node: its backward sums fc1's bias gradient in the GELU pass.
  Tensor m = branch(mlp.fc2, mlp.fc1.forward_gelu(mid.normed));
  return {mid.sum, m};
}

VisionTransformer::PatchEmbed::PatchEmbed(const VitConfig& cfg, Rng& rng) {
  // nn.Conv2d's default init (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), +).
  const int64_t fan_in = cfg.in_chans * cfg.patch_size * cfg.patch_size;
  const double bound = 1.0 / std::sqrt(double(fan_in));
  proj.weight = make_param(Tensor::uniform(
      {cfg.embed_dim, cfg.in_chans, cfg.patch_size, cfg.patch_size}, rng, -bound, bound));
  proj.bias = make_param(Tensor::uniform({cfg.embed_dim}, rng, -bound, bound));
  proj.register_parameter("weight", &proj.weight);
  proj.register_parameter("bias", &proj.bias);
  register_module("proj", &proj);
}

VisionTransformer::VisionTransformer(const VitConfig& cfg, Rng& rng)
    : patch_embed(cfg, rng), norm(cfg.embed_dim, cfg.ln_eps), cfg_(cfg) {
  DINO_CHECK(cfg.patch_size > 0 && cfg.img_size >= cfg.patch_size, "[vit] image size ",
             cfg.img_size, " is smaller than the patch size ", cfg.patch_size);
  DINO_CHECK(cfg.num_heads > 0 && cfg.embed_dim % cfg.num_heads == 0, "[vit] embed_dim ",
             cfg.embed_dim, " is not divisible by ", cfg.num_heads, " heads");
  DINO_CHECK(cfg.in_chans == 1 || cfg.in_chans == 3, "[vit] in_chans must be 1 or 3, got ",
             cfg.in_chans);
  const int64_t N = cfg.grid() * cfg.grid();
  cls_token = make_param(Tensor::trunc_normal({1, 1, cfg.embed_dim}, rng, 0.02));
  pos_embed = make_param(Tensor::trunc_normal({1, N + 1, cfg.embed_dim}, rng, 0.02));
  register_module("patch_embed", &patch_embed);
  register_parameter("cls_token", &cls_token);
  register_parameter("pos_embed", &pos_embed);
  for (int64_t i = 0; i < cfg.depth; ++i) {
    const double dpr = cfg.depth > 1 ? cfg.drop_path_rate * double(i) / double(cfg.depth - 1) : 0.0;
    blocks.push_back(std::make_unique<Block>(cfg, dpr, rng));
    register_module("blocks." + std::to_string(i), blocks.back().get());
  }
  register_module("norm", &norm);
}

Tensor VisionTransformer::interpolate_pos_encoding(int64_t h, int64_t w) const {
  const int64_t P = cfg_.patch_size, D = cfg_.embed_dim, g = cfg_.grid();
  const int64_t N = g * g;
  if ((h / P) * (w / P) == N && w == h) return pos_embed;
  Tensor table = pos_embed.reshape({N + 1, D});
  // The patch tokens run row by row over an (h / P) x (w / P) grid, so the table is resampled
  // to h / P rows and w / P columns. (DINO's prepare_tokens names the image's dims 2 and 3
  // "w, h", so its interpolate_pos_encoding scales dim 2 by its "w0": the same rows.)
  // DINO's +0.1 avoids a floating-point error in the output size (dino#8); the scale factor
  // itself, not the output size, drives the sampling, as in F.interpolate(scale_factor=...).
  const double h0 = double(h / P) + 0.1, w0 = double(w / P) + 0.1;
  const double sh = h0 / double(g), sw = w0 / double(g);
  const int64_t rows = int64_t(std::floor(double(g) * sh)),
                cols = int64_t(std::floor(double(g) * sw));
  DINO_CHECK(rows == h / P && cols == w / P, "[vit] position-embedding interpolation gave a ", rows,
             "x", cols, " grid for a ", h / P, "x", w / P, " patch grid");
  Tensor patch = resize_bicubic(table.narrow(1, N).reshape({g, g, D}), rows, cols, sh, sw);
  return concat({table.narrow(0, 1), patch.reshape({rows * cols, D})})
      .reshape({1, 1 + rows * cols, D});
}

Tensor VisionTransformer::embed(const Tensor& images) const {
  DINO_CHECK(images.dim() == 4 && images.size(1) == cfg_.in_chans, "[vit] expected images (B, ",
             cfg_.in_chans, ", H, W), got ", shape_str(images.shape()));
  Tensor x = patchify(images, patch_embed.proj.weight, patch_embed.proj.bias);
  x = prepend_token(x, cls_token);
  return add(x, interpolate_pos_encoding(images.size(2), images.size(3)));
}

Tensor VisionTransformer::forward_tokens(const Tensor& images, DropPathNoise* drop) const {
  Residual x{embed(images), Tensor()};
  for (const auto& blk : blocks) x = blk->forward(x, drop);
  return add_norm(x, norm).normed;
}

Tensor VisionTransformer::forward(const Tensor& images, DropPathNoise* drop) const {
  return select_token(forward_tokens(images, drop), 0);
}

Tensor VisionTransformer::last_self_attention(const Tensor& images) const {
  Residual x{embed(images), Tensor()};
  Tensor probs;
  for (size_t i = 0; i < blocks.size(); ++i)
    x = blocks[i]->forward(x, nullptr, i + 1 == blocks.size() ? &probs : nullptr);
  return probs;
}

double VisionTransformer::flops_per_image(int64_t img_size) const {
  const double P = double(cfg_.patch_size), D = double(cfg_.embed_dim);
  const double N = std::floor(double(img_size) / P) * std::floor(double(img_size) / P) + 1;
  const double hidden = D * cfg_.mlp_ratio;
  const double embed = 2.0 * (N - 1) * double(cfg_.in_chans) * P * P * D;
  const double block =
      2.0 * N * D * 3 * D + 4.0 * N * N * D + 2.0 * N * D * D + 4.0 * N * D * hidden;
  return embed + double(cfg_.depth) * block;
}

}  // namespace dino
