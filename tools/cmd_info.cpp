// `dino info`: what this build can do, what device it would use, and what a recipe builds:
// the model's size and cost and whether its dataset opens.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/storage.h"
#include "data/datasets.h"
#include "models/dino_head.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/trainer.h"

namespace dino::tools {

namespace {

nlohmann::json build_facts(const std::string& requested) {
  nlohmann::json out;
  const Backend* cuda = cuda_backend();
  out["cuda_build"] = cuda != nullptr;
  out["cuda_device"] = cuda ? cuda->description() : "none (built without CUDA)";
  out["cuda_usable"] = cuda_available();
  // How the CPU kernels' threads wait for each other (tools/omp_wait_policy.h).
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  out["cpu_threads"] = omp_get_max_threads();
  out["omp_wait"] = policy ? std::string("OMP_WAIT_POLICY=") + policy
                    : spin ? std::string("GOMP_SPINCOUNT=") + spin
                           : std::string("runtime default");
  // What `--device auto` picks (train, knn), and the device this command was asked about.
  out["auto_device"] = cuda_available() ? "cuda" : "cpu";
  out["auto_device_reason"] = cuda_available() ? "a usable CUDA device" : "no usable CUDA device";
  out["device"] = describe_device(resolve_device(requested, "info"));
  return out;
}

nlohmann::json recipe_facts(const Recipe& recipe) {
  nlohmann::json out;
  const std::string& spec = recipe.data.dataset;
  int64_t in_chans = 3;
  out["dataset_spec"] = spec;
  try {
    const auto ds = data::open_dataset(spec, data::Split::train);
    out["dataset"] = ds->describe();
    in_chans = ds->channels();
  } catch (const Error& e) {
    out["dataset"] = nullptr;
    out["dataset_error"] = e.what();
  }
  out["in_chans"] = in_chans;
  out["in_chans_from_dataset"] = !out["dataset"].is_null();

  const VitConfig vc = recipe.vit(in_chans);
  Rng rng(0);  // only the shapes matter
  const VisionTransformer vit(vc, rng);
  const DinoHead head(recipe.head, rng);
  const int64_t global = recipe.crops.global.size, local = recipe.crops.local.size;
  out["arch"] = recipe.model.arch;
  out["vit"] = {{"img_size", vc.img_size},   {"patch_size", vc.patch_size},
                {"embed_dim", vc.embed_dim}, {"depth", vc.depth},
                {"num_heads", vc.num_heads}, {"mlp_ratio", vc.mlp_ratio}};
  out["head_out_dim"] = head.config().out_dim;
  out["backbone_parameters"] = vit.num_parameters();
  out["head_parameters"] = head.num_parameters();
  out["global_size"] = global;
  out["local_size"] = local;
  out["local_crops"] = recipe.crops.local.count;
  out["backbone_flops_global"] = vit.flops_per_image(global);
  out["backbone_flops_local"] = vit.flops_per_image(local);
  return out;
}

}  // namespace

void add_info_command(CLI::App& app) {
  struct Args {
    std::string config, data, device = "auto";
    std::vector<std::string> overrides;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("info", "Build and device facts, and what a recipe builds");
  cmd->add_option("--config", args->config,
                  "JSON recipe (configs/*.json); default: DINO's ViT-S/16 defaults");
  cmd->add_option("--data", args->data, "Dataset spec, overrides data.dataset");
  cmd->add_option("--device", args->device,
                  "auto, cpu or cuda: the device to report on (cuda "
                  "without a usable GPU is an error, as in `dino train`)")
      ->capture_default_str();
  cmd->add_option("overrides", args->overrides,
                  "Recipe overrides group.key=value, e.g. model.arch=vit_tiny");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    std::vector<std::string> overrides = args->overrides;
    if (!args->data.empty()) overrides.push_back("data.dataset=\"" + args->data + "\"");
    const Recipe recipe = load_recipe(args->config, overrides);
    nlohmann::json out = build_facts(args->device);
    std::printf(
        "dino-engine\n  CUDA in this build: %s\n  CUDA device: %s\n  --device auto: %s (%s)\n"
        "  --device %s: %s\n  CPU threads (OpenMP): %d, waiting: %s\n",
        out["cuda_build"].get<bool>() ? "yes" : "no", out["cuda_device"].get<std::string>().c_str(),
        out["auto_device"].get<std::string>().c_str(),
        out["auto_device_reason"].get<std::string>().c_str(), args->device.c_str(),
        out["device"].get<std::string>().c_str(), out["cpu_threads"].get<int>(),
        out["omp_wait"].get<std::string>().c_str());

    const nlohmann::json r = recipe_facts(recipe);
    out["recipe"] = r;
    out["recipe"]["config"] = args->config.empty() ? "defaults" : args->config;
    const nlohmann::json& v = r["vit"];
    std::printf("recipe: %s\n",
                args->config.empty() ? "defaults (DINO ViT-S/16)" : args->config.c_str());
    std::printf(
        "  model: %s, %ld px, patch %ld, dim %ld, depth %ld, heads %ld, %ld input channels%s\n",
        r["arch"].get<std::string>().c_str(), long(v["img_size"]), long(v["patch_size"]),
        long(v["embed_dim"]), long(v["depth"]), long(v["num_heads"]), long(r["in_chans"]),
        r["in_chans_from_dataset"].get<bool>() ? "" : " (assumed: the dataset did not open)");
    std::printf("  parameters: backbone %.3f M, head %.3f M (%ld outputs)\n",
                r["backbone_parameters"].get<double>() / 1e6,
                r["head_parameters"].get<double>() / 1e6, long(r["head_out_dim"]));
    std::printf(
        "  backbone forward per image: %.4g GFLOP at %ld px (global), %.4g GFLOP at %ld px (local, "
        "x%ld)\n",
        r["backbone_flops_global"].get<double>() / 1e9, long(r["global_size"]),
        r["backbone_flops_local"].get<double>() / 1e9, long(r["local_size"]),
        long(r["local_crops"]));
    if (r["dataset"].is_null())
      std::printf("  dataset %s: does not open: %s\n", r["dataset_spec"].get<std::string>().c_str(),
                  r["dataset_error"].get<std::string>().c_str());
    else
      std::printf("  dataset: %s\n", r["dataset"].get<std::string>().c_str());
    std::fflush(stdout);
    if (args->json) std::cout << out.dump() << std::endl;
  });
}

}  // namespace dino::tools
