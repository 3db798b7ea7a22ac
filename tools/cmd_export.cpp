// `dino export`: the teacher backbone alone under bare timm names (patch_embed.proj.weight,
// cls_token, pos_embed, blocks.N..., norm.*), the file a timm-style ViT loads with
// strict=True, with the metadata a reader needs (train/backbone_file.h). timm's `head` is a
// classifier, so the DINO head stays out. tools/load_export.py rebuilds it in plain PyTorch.
#include <cstdio>
#include <iostream>

#include "core/safetensors.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

namespace dino::tools {

void add_export_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, out;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      app.add_subcommand("export", "Write the teacher backbone as a timm-named safetensors file");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Training checkpoint (.safetensors) written by `dino train`")
      ->required();
  cmd->add_option("--out", args->out, "Output .safetensors (written to OUT.tmp, then renamed)")
      ->required();
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    check_output_file("export", args->out, {args->checkpoint});
    const Backbone b = load_backbone(args->checkpoint);
    std::map<std::string, std::string> metadata{{"source", b.path}};
    if (b.step >= 0) metadata["step"] = std::to_string(b.step);
    if (b.from_training_checkpoint) metadata["arch"] = b.recipe.model.arch;
    export_backbone(args->out, *b.model, metadata, b.norm);
    const auto tensors = b.model->named_parameters();
    const int64_t numel = b.model->num_parameters();
    const auto written = load_safetensors(args->out).metadata;
    std::printf("wrote %s: teacher backbone, %zu tensors, %.2f M parameters, step %ld\n",
                args->out.c_str(), tensors.size(), double(numel) / 1e6, long(b.step));
    if (args->json)
      std::cout << nlohmann::json{{"out", args->out},
                                  {"tensors", tensors.size()},
                                  {"parameters", numel},
                                  {"step", b.step},
                                  {"vit_config", nlohmann::json::parse(written.at("vit_config"))},
                                  {"mean", nlohmann::json::parse(written.at("mean"))},
                                  {"std", nlohmann::json::parse(written.at("std"))},
                                  {"timm_model", written.at("timm_model")}}
                       .dump()
                << std::endl;
  });
}

}  // namespace dino::tools
