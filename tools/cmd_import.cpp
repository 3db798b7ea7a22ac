// `dino import`: a ViT backbone trained elsewhere (facebookresearch/dino's .pth files, read
// without PyTorch; timm's safetensors) as a backbone file every other subcommand and
// model.init_from read (train/import_weights.h says what is accepted).
#include <cstdio>
#include <iostream>

#include "tools/cli_util.h"
#include "tools/commands.h"
#include "train/import_weights.h"

namespace dino::tools {

void add_import_command(CLI::App& app) {
  struct Args {
    std::string in, out, which = "teacher";
    int64_t num_heads = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "import",
      "Convert DINO (.pth) or timm (.safetensors) ViT weights into a backbone file for "
      "knn, embed, attention and model.init_from");
  cmd->add_option("file", args->in,
                  "facebookresearch/dino .pth (a backbone state dict such as "
                  "dino_vits16, or a full training checkpoint) or a timm ViT .safetensors")
      ->required();
  cmd->add_option("--out", args->out,
                  "Output backbone .safetensors (written to OUT.tmp, then renamed)")
      ->required();
  cmd->add_option("--which", args->which, "Of a DINO training checkpoint: teacher or student")
      ->capture_default_str();
  cmd->add_option("--num-heads", args->num_heads,
                  "Attention heads (default: the checkpoint's "
                  "args.arch, else width / 64 as in every DINO and timm ViT-Ti/S/B/L)");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    DINO_CHECK(args->num_heads >= 0, "[import] --num-heads must be positive, got ",
               args->num_heads);
    check_output_file("import", args->out, {args->in});
    ImportOptions options;
    options.which = args->which;
    options.num_heads = args->num_heads;
    const ImportedBackbone b = import_backbone(args->in, options);
    const VitConfig& c = b.model->config();
    export_backbone(
        args->out, *b.model,
        {{"source", args->in}, {"source_format", b.format}, {"num_heads_from", b.heads_from}},
        b.norm);
    std::printf("read %s: %s\n", args->in.c_str(), b.format.c_str());
    std::printf(
        "ViT: width %ld, depth %ld, %ld heads (%s), patch %ld, %ld x %ld px, %ld channels, "
        "%.2f M parameters\n",
        long(c.embed_dim), long(c.depth), long(c.num_heads), b.heads_from.c_str(),
        long(c.patch_size), long(c.img_size), long(c.img_size), long(c.in_chans),
        double(b.model->num_parameters()) / 1e6);
    for (const std::string& s : b.left_out) std::printf("left out: %s\n", s.c_str());
    const std::string timm = timm_model_name(c);
    std::printf("wrote %s%s\n", args->out.c_str(),
                timm.empty() ? "" : (" (timm: " + timm + ")").c_str());
    if (args->json)
      std::cout << nlohmann::json{{"out", args->out},           {"format", b.format},
                                  {"embed_dim", c.embed_dim},   {"depth", c.depth},
                                  {"num_heads", c.num_heads},   {"num_heads_from", b.heads_from},
                                  {"patch_size", c.patch_size}, {"img_size", c.img_size},
                                  {"in_chans", c.in_chans},     {"left_out", b.left_out},
                                  {"timm_model", timm}}
                       .dump()
                << std::endl;
  });
}

}  // namespace dino::tools
