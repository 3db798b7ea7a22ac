#pragma once
// Features of a trained ViT for a dataset or a list of image files: the [CLS] token after the
// final norm (what DINO's k-NN and linear evaluations read) and, when asked, every patch
// token. `dino embed`, `dino knn` and examples/embed.cpp all go through embed().
//
//   Backbone b = load_backbone("runs/fmnist/checkpoint.safetensors");
//   auto images = data::open_image_files({"a.png", "b.png"}, int(b.model->config().in_chans));
//   Embeddings e = embed(*b.model, *images, b.norm);                    // e.cls: (2, D)
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "models/vit.h"
#include "train/backbone_file.h"

namespace dino {

// Called with (done, total) as images go through the model.
using ProgressFn = std::function<void(int64_t, int64_t)>;

struct EmbedOptions {
  int64_t batch = 64;         // images per forward pass
  bool patch_tokens = false;  // also keep every patch token (n, N, D), N = (img_size / patch)^2
  bool l2_normalize = false;  // [CLS] rows scaled to unit length (DINO's k-NN features)
  ProgressFn progress;
};

struct Embeddings {
  Tensor cls;                      // (n, D) f32 on the CPU
  Tensor patch_tokens;             // (n, N, D) f32 on the CPU; undefined unless asked for
  std::vector<int> labels;         // -1 where the dataset has none
  std::vector<int64_t> index;      // each row's position in the dataset
  std::vector<std::string> paths;  // each row's file; empty for datasets held in memory
};

// Every image of `ds` through data::eval_transform at the model's img_size (resize, centre
// crop, normalise with `norm`), batched, without autograd, on the model's device. Throws
// naming the image when its features are not finite (damaged weights or input).
Embeddings embed(const VisionTransformer& model, const data::Dataset& ds,
                 const data::Normalization& norm, const EmbedOptions& options = {});

// By the extension of `path`:
//   .safetensors  tensors "cls", "patch_tokens" (if any), "labels" and "index" (I32), and in
//                 the metadata `metadata` plus "paths" (a JSON list, if any)
//   .npy          PATH (the [CLS] features) and beside it STEM_labels.npy, STEM_index.npy
//                 (int64), STEM_patch_tokens.npy, STEM_paths.txt (one per line) and
//                 STEM_meta.json (`metadata`)
// Each file is written to FILE.tmp and renamed into place.
// check_embeddings_path throws unless `path` has one of these extensions (before any work).
void check_embeddings_path(const std::string& path);
void save_embeddings(const std::string& path, const Embeddings& e,
                     const std::map<std::string, std::string>& metadata);

}  // namespace dino
