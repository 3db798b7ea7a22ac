#include "train/embed.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/autograd.h"
#include "core/npy.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "data/loader.h"

namespace dino {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Tensor int32_tensor(const std::vector<int64_t>& values) {
  Tensor t = Tensor::empty({int64_t(values.size())}, DType::i32);
  for (size_t i = 0; i < values.size(); ++i) t.data<int32_t>()[i] = int32_t(values[i]);
  return t;
}

}  // namespace

Embeddings embed(const VisionTransformer& model, const data::Dataset& ds,
                 const data::Normalization& norm, const EmbedOptions& options) {
  const VitConfig& vc = model.config();
  DINO_CHECK(options.batch > 0, "[embed] batch size must be positive, got ", options.batch);
  DINO_CHECK(ds.channels() == vc.in_chans, "[embed] ", ds.describe(), " has ", ds.channels(),
             " channels, the model expects ", vc.in_chans);
  NoGradGuard no_grad;
  const int64_t n = int64_t(ds.size()), D = vc.embed_dim, S = vc.img_size;
  const int64_t N = vc.grid() * vc.grid();
  const Device device = model.cls_token.device();
  Embeddings e;
  e.cls = Tensor::empty({n, D});
  if (options.patch_tokens) e.patch_tokens = Tensor::empty({n, N, D});
  for (int64_t begin = 0; begin < n; begin += options.batch) {
    const int64_t end = std::min(n, begin + options.batch), b = end - begin;
    const Tensor images =
        Tensor::from_vector(data::eval_batch(ds, size_t(begin), size_t(end), int(S), norm),
                            {b, vc.in_chans, S, S})
            .to(device);
    // On CUDA the final LayerNorm writes bf16: cast to f32 on the device before the
    // normalisation, so only the features' own bf16 rounding remains. No-op on the CPU.
    Tensor tokens, cls;
    if (options.patch_tokens) {
      tokens = model.forward_tokens(images).to(DType::f32);
      cls = select_token(tokens, 0);
    } else {
      cls = model.forward(images).to(DType::f32);
    }
    if (options.l2_normalize) cls = l2_normalize(cls);
    cls = cls.to(Device::cpu);
    DINO_CHECK(cls.numel() == b * D, "[embed] the model returned ", cls.str(), " for ", b,
               " images");
    const float* c = cls.data<float>();
    for (int64_t i = 0; i < b * D; ++i) {
      if (std::isfinite(c[i])) continue;
      const std::string path = ds.path(size_t(begin + i / D));
      throw Error(str_cat("[embed] the model's features of image ", begin + i / D,
                          path.empty() ? "" : " (" + path + ")", " of ", ds.describe(),
                          " are not finite (NaN or infinity): its weights are not finite or "
                          "overflow; nothing is computed from them"));
    }
    std::memcpy(e.cls.data<float>() + begin * D, c, cls.nbytes());
    if (options.patch_tokens) {
      const Tensor host = tokens.to(Device::cpu);
      for (int64_t i = 0; i < b; ++i)
        std::memcpy(e.patch_tokens.data<float>() + (begin + i) * N * D,
                    host.data<float>() + (i * (N + 1) + 1) * D, size_t(N * D) * sizeof(float));
    }
    if (options.progress) options.progress(end, n);
  }
  bool any_path = false;
  for (int64_t i = 0; i < n; ++i) {
    e.labels.push_back(ds.label(size_t(i)));
    e.index.push_back(i);
    e.paths.push_back(ds.path(size_t(i)));
    any_path = any_path || !e.paths.back().empty();
  }
  if (!any_path) e.paths.clear();
  return e;
}

void check_embeddings_path(const std::string& path) {
  DINO_CHECK(ends_with(path, ".safetensors") || ends_with(path, ".npy"), "[embed] output '", path,
             "' must end in .safetensors or .npy");
}

void save_embeddings(const std::string& path, const Embeddings& e,
                     const std::map<std::string, std::string>& metadata) {
  check_embeddings_path(path);
  const std::vector<int64_t> labels(e.labels.begin(), e.labels.end());
  if (ends_with(path, ".safetensors")) {
    std::vector<std::pair<std::string, Tensor>> tensors{{"cls", e.cls}};
    if (e.patch_tokens.defined()) tensors.push_back({"patch_tokens", e.patch_tokens});
    tensors.push_back({"labels", int32_tensor(labels)});
    tensors.push_back({"index", int32_tensor(e.index)});
    std::map<std::string, std::string> md = metadata;
    if (!e.paths.empty()) md["paths"] = nlohmann::json(e.paths).dump();
    save_safetensors(path, tensors, md);
    return;
  }
  const std::string stem = path.substr(0, path.size() - 4);
  save_npy(path, e.cls);
  save_npy(stem + "_labels.npy", labels);
  save_npy(stem + "_index.npy", e.index);
  if (e.patch_tokens.defined()) save_npy(stem + "_patch_tokens.npy", e.patch_tokens);
  if (!e.paths.empty()) {
    std::string text;
    for (const std::string& p : e.paths) text += p + "\n";
    write_file_atomically(stem + "_paths.txt", text);
  }
  // Values that hold JSON (vit_config, mean, std) are written as JSON, the rest as strings.
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : metadata) {
    const nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
    meta[key] = parsed.is_object() || parsed.is_array() ? parsed : nlohmann::json(value);
  }
  write_file_atomically(stem + "_meta.json", meta.dump(2) + "\n");
}

}  // namespace dino
