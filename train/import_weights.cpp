#include "train/import_weights.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "core/safetensors.h"
#include "train/import_pth.h"

namespace dino {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// A tensor of the file by its name after the prefixes are stripped; its data is read only
// when the model takes it.
struct Entry {
  std::string original;  // the name in the file, for messages
  Shape shape;
  std::function<Tensor()> load;
};

// Why a model with this tensor is not one the engine builds.
std::string what_it_is(const std::string& name) {
  if (name.find(".ls1.") != std::string::npos || name.find(".ls2.") != std::string::npos)
    return " (LayerScale)";
  if (name == "reg_token") return " (register tokens)";
  if (starts_with(name, "fc_norm.")) return " (average pooling)";
  if (starts_with(name, "norm_pre.")) return " (a pre-norm before the blocks)";
  if (name.find("q_norm") != std::string::npos || name.find("k_norm") != std::string::npos)
    return " (QK norm)";
  if (name == "mask_token") return " (iBOT/DINOv2 mask token)";
  return "";
}

const Entry& need(const std::map<std::string, Entry>& tensors, const std::string& name,
                  const std::string& path, const char* why) {
  const auto it = tensors.find(name);
  DINO_CHECK(it != tensors.end(), "[import] ", path, " has no '", name, "' (", why, ")");
  return it->second;
}

// The shape of the ViT the tensors describe (see the header).
VitConfig infer_config(const std::map<std::string, Entry>& t, const std::string& path,
                       int64_t heads, const std::string& arch, std::string& heads_from) {
  const Shape cls = need(t, "cls_token", path,
                         "not a ViT with a [CLS] token: DINO's ResNet and XCiT "
                         "weights do not import")
                        .shape;
  const Shape proj = need(t, "patch_embed.proj.weight", path, "the patch embedding").shape;
  const Shape pos = need(t, "pos_embed", path, "the position embeddings").shape;
  DINO_CHECK(cls.size() == 3 && cls[0] == 1 && cls[1] == 1, "[import] ", path, ": cls_token is ",
             shape_str(cls), ", expected (1, 1, width)");
  VitConfig c;
  c.embed_dim = cls[2];
  DINO_CHECK(proj.size() == 4 && proj[0] == c.embed_dim && proj[2] == proj[3], "[import] ", path,
             ": patch_embed.proj.weight is ", shape_str(proj), ", expected (", c.embed_dim,
             ", channels, patch, patch)");
  c.in_chans = proj[1];
  c.patch_size = proj[2];
  DINO_CHECK(pos.size() == 3 && pos[0] == 1 && pos[2] == c.embed_dim && pos[1] >= 2, "[import] ",
             path, ": pos_embed is ", shape_str(pos), ", expected (1, 1 + patches, ", c.embed_dim,
             ")");
  const int64_t grid = std::llround(std::sqrt(double(pos[1] - 1)));
  DINO_CHECK(grid * grid == pos[1] - 1, "[import] ", path, ": pos_embed holds ", pos[1] - 1,
             " patch positions, not a square grid");
  c.img_size = grid * c.patch_size;
  c.depth = 0;
  while (t.count(str_cat("blocks.", c.depth, ".norm1.weight"))) ++c.depth;
  DINO_CHECK(c.depth > 0, "[import] ", path,
             " has no blocks.0.norm1.weight: no transformer blocks");
  const Shape fc1 = need(t, "blocks.0.mlp.fc1.weight", path, "the first block's MLP").shape;
  DINO_CHECK(fc1.size() == 2 && fc1[1] == c.embed_dim, "[import] ", path,
             ": blocks.0.mlp.fc1.weight is ", shape_str(fc1));
  c.mlp_ratio = double(fc1[0]) / double(c.embed_dim);
  c.qkv_bias = t.count("blocks.0.attn.qkv.bias") > 0;
  c.drop_path_rate = 0;
  if (heads > 0) {
    c.num_heads = heads;
    heads_from = "given";
  } else if (!arch.empty()) {
    VitConfig preset;
    try {
      preset = vit_preset(arch);
    } catch (const Error&) {
      throw Error(str_cat("[import] ", path, ": args.arch is '", arch,
                          "', not a ViT this engine "
                          "knows; give the number of heads"));
    }
    DINO_CHECK(preset.embed_dim == c.embed_dim, "[import] ", path, ": args.arch '", arch, "' is ",
               preset.embed_dim, " wide, the tensors ", c.embed_dim);
    c.num_heads = preset.num_heads;
    heads_from = "args.arch = " + arch;
  } else {
    DINO_CHECK(c.embed_dim % 64 == 0, "[import] ", path, ": width ", c.embed_dim,
               " is not a multiple "
               "of 64, so the number of heads cannot be assumed; give it");
    c.num_heads = c.embed_dim / 64;
    heads_from = "width / 64, as in every DINO and timm ViT-Ti/S/B/L";
  }
  DINO_CHECK(c.embed_dim % c.num_heads == 0, "[import] ", path, ": ", c.num_heads,
             " heads do not divide the width ", c.embed_dim);
  return c;
}

}  // namespace

ImportedBackbone import_backbone(const std::string& path, const ImportOptions& options) {
  namespace fs = std::filesystem;
  DINO_CHECK(options.which == "teacher" || options.which == "student",
             "[import] which must be "
             "teacher or student, got '",
             options.which, "'");
  std::error_code ec;
  DINO_CHECK(fs::is_regular_file(path, ec), "[import] ", path, ": file not found");
  std::string magic(4, '\0');
  std::ifstream(path, std::ios::binary).read(magic.data(), 4);

  ImportedBackbone out;
  std::map<std::string, Entry> tensors;
  std::map<std::string, int> left_out;  // description -> tensor count
  std::string arch;
  // Strips "module." (DDP) and "backbone." (DINO's MultiCropWrapper); sets DINO's head and
  // timm's classifier aside.
  auto add = [&](const std::string& name, Shape shape, std::function<Tensor()> load,
                 const char* head_kind) {
    std::string n = name;
    if (starts_with(n, "module.")) n = n.substr(7);
    if (starts_with(n, "backbone.")) {
      n = n.substr(9);
    } else if (starts_with(n, "head.")) {
      ++left_out[head_kind];
      return;
    }
    DINO_CHECK(
        tensors.emplace(n, Entry{pth::printable(name), std::move(shape), std::move(load)}).second,
        "[import] ", path, ": two tensors are named '", pth::printable(n),
        "' once prefixes are stripped");
  };

  std::shared_ptr<pth::File> pth;  // the tensors' loaders read from it
  // A zip is torch.save's format; a pickle (0x80) its pre-1.6 one, which pth::File names.
  if (magic == std::string("PK\x03\x04", 4) || uint8_t(magic[0]) == 0x80) {
    pth = std::make_shared<pth::File>(path);
    const pth::Value& root = pth->root();
    DINO_CHECK(root.kind == pth::Value::Kind::dict, "[import] ", path, " holds ", root.describe(),
               ", not a state dict");
    const pth::Value* sd = &root;
    out.format = "PyTorch state dict";
    const char* head_kind = "head.* (a classifier)";
    if (root.get("teacher") || root.get("student")) {
      sd = root.get(options.which);
      DINO_CHECK(sd && sd->kind == pth::Value::Kind::dict, "[import] ", path,
                 " is a training checkpoint "
                 "without a '",
                 options.which, "' state dict");
      out.format = "DINO training checkpoint (" + options.which + ")";
      head_kind = "head.* (the DINO head)";
      const pth::Value* args = root.get("args");
      const pth::Value* a = args ? args->get("arch") : nullptr;
      if (a && a->kind == pth::Value::Kind::string) arch = a->text;
    }
    for (const auto& [key, value] : sd->entries) {
      DINO_CHECK(key->kind == pth::Value::Kind::string, "[import] ", path, ": a state dict key is ",
                 key->describe(), ", not a name");
      DINO_CHECK(value->kind == pth::Value::Kind::tensor, "[import] ", path, ": '",
                 pth::printable(key->text), "' is ", value->describe(),
                 ", not a tensor; a state dict holds only tensors");
      const pth::TensorRef ref = value->tensor;
      const std::string name = key->text, shown = pth::printable(name);
      add(
          name, ref.shape, [pth, ref, shown] { return pth->tensor(ref, shown); }, head_kind);
    }
  } else {
    auto file = std::make_shared<SafeTensors>(load_safetensors(path));
    DINO_CHECK(!file->metadata.count("dino_engine") && !file->metadata.count("config"), "[import] ",
               path, " is already a dino-engine file: use it as it is");
    out.format = "safetensors (timm names)";
    for (const auto& [name, t] : file->tensors) {
      DINO_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16 || t.dtype() == DType::f64,
                 "[import] ", path, ": '", name, "' holds ", dtype_name(t.dtype()),
                 " values; weights must be floating point");
      const Tensor tensor = t;
      add(
          name, t.shape(), [tensor] { return tensor.to(DType::f32); },
          "head.* (timm's classifier)");
    }
  }

  const VitConfig c = infer_config(tensors, path, options.num_heads, arch, out.heads_from);
  Rng unused(0);  // every weight is overwritten below
  out.model = std::make_unique<VisionTransformer>(c, unused);
  std::set<std::string> used;
  auto entries = out.model->named_parameters();
  for (auto& kv : out.model->named_buffers()) entries.push_back(kv);
  for (auto& [name, dst] : entries) {
    const Entry& e = need(tensors, name, path, "every tensor of the ViT must be in the file");
    DINO_CHECK(e.shape == dst.shape(), "[import] ", path, ": '", e.original, "' is ",
               shape_str(e.shape), ", a ViT of this shape needs ", shape_str(dst.shape()));
    dst.copy_from(e.load());
    used.insert(name);
  }
  std::string unknown;
  int unknown_count = 0;
  for (const auto& [name, e] : tensors)
    if (!used.count(name) && ++unknown_count <= 5)
      unknown += str_cat(unknown.empty() ? "" : ", ", e.original, what_it_is(name));
  DINO_CHECK(unknown_count == 0, "[import] ", path, " holds ", unknown_count, " tensor",
             unknown_count == 1 ? "" : "s", " the engine's ViT does not have: ", unknown,
             unknown_count > 5 ? ", ..." : "");
  for (const auto& [what, count] : left_out)
    out.left_out.push_back(str_cat(what, ", ", count, " tensors"));
  out.norm = data::default_normalization(int(c.in_chans));
  out.model->train(false);
  return out;
}

}  // namespace dino
