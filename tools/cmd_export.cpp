// `dino export`: the teacher backbone alone under bare timm names (patch_embed.proj.weight,
// cls_token, pos_embed, blocks.N..., norm.*), the file a timm-style ViT loads with
// strict=True. timm's `head` is a classifier, so the DINO head stays out.
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
  auto* cmd = app.add_subcommand("export", "Write the teacher backbone as a timm-named safetensors file");
  cmd->add_option("--checkpoint", args->checkpoint, "Training checkpoint (.safetensors) written by `dino train`")
      ->required();
  cmd->add_option("--out", args->out, "Output .safetensors (written to OUT.tmp, then renamed)")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    check_output_file("export", args->out, {args->checkpoint});
    const Checkpoint ck = open_checkpoint(args->checkpoint);
    const auto vit = load_teacher_backbone(ck);
    export_backbone(args->out, *vit,
                    {{"arch", ck.recipe.model.arch},
                     {"source_checkpoint", ck.path},
                     {"step", std::to_string(ck.meta.step)}});
    const auto tensors = vit->named_parameters();
    const int64_t numel = vit->num_parameters();
    const nlohmann::json config = nlohmann::json::parse(
        load_safetensors(args->out).metadata.at("vit_config"));
    std::printf("wrote %s: teacher backbone, %zu tensors, %.2f M parameters, step %ld\n",
                args->out.c_str(), tensors.size(), double(numel) / 1e6, long(ck.meta.step));
    if (args->json)
      std::cout << nlohmann::json{{"out", args->out}, {"tensors", tensors.size()}, {"parameters", numel},
                                  {"step", ck.meta.step}, {"vit_config", config}}
                       .dump()
                << std::endl;
  });
}

}  // namespace dino::tools
