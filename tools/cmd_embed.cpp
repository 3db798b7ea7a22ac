// `dino embed`: the [CLS] features (optionally every patch token) of a trained backbone for a
// dataset or image files, with each row's index, label and file, as .safetensors or .npy.
#include <cstdio>
#include <iostream>

#include "tools/cli_util.h"
#include "tools/commands.h"
#include "train/trainer.h"

namespace dino::tools {

void add_embed_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, data, split = "train", out, device = "auto";
    std::vector<std::string> images;
    int64_t batch = 64;
    bool patch_tokens = false, l2_normalize = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "embed",
      "Features of a trained backbone ([CLS], optionally patch tokens) for a dataset or "
      "image files, to .safetensors or .npy");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Training checkpoint written by `dino train` "
                  "(its teacher), or a backbone file from `dino export` / `dino import`")
      ->required();
  auto* data = cmd->add_option("--data", args->data,
                               "Dataset spec: fashion-mnist[:DIR], cifar10:DIR, "
                               "cifar100:DIR, folder:DIR, synthetic[:k=v,...]");
  auto* images =
      cmd->add_option("--image", args->images, "Or: image files (PNG, JPEG, BMP), unlabelled");
  data->excludes(images);
  cmd->add_option("--split", args->split, "train or test: the split of --data")
      ->capture_default_str();
  cmd->add_option(
         "--out", args->out,
         "Output FILE.safetensors (tensors cls, patch_tokens, labels, index; "
         "metadata) or FILE.npy (the [CLS] features, with FILE_labels.npy, FILE_index.npy, "
         "FILE_patch_tokens.npy, FILE_paths.txt, FILE_meta.json beside it)")
      ->required();
  cmd->add_flag("--patch-tokens", args->patch_tokens,
                "Also write every patch token after the final norm "
                "(n, (img_size/patch)^2, D)");
  cmd->add_flag("--l2-normalize", args->l2_normalize,
                "Scale each [CLS] row to unit length (the "
                "features DINO's k-NN ranks)");
  cmd->add_option("--batch", args->batch, "Images per forward pass")->capture_default_str();
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    DINO_CHECK(!args->data.empty() || !args->images.empty(),
               "[embed] give --data SPEC or --image FILE...");
    DINO_CHECK(args->split == "train" || args->split == "test",
               "[embed] --split must be train or test, got '", args->split, "'");
    DINO_CHECK(args->batch >= 1, "[embed] --batch must be at least 1, got ", args->batch);
    check_embeddings_path(args->out);
    std::vector<std::string> inputs = args->images;
    inputs.push_back(args->checkpoint);
    check_output_file("embed", args->out, inputs);
    const Device device = resolve_device(args->device, "embed");
    const Backbone b = load_backbone(args->checkpoint);
    const VitConfig& vc = b.model->config();
    const auto ds = args->images.empty()
                        ? data::open_dataset(args->data, args->split == "train" ? data::Split::train
                                                                                : data::Split::test)
                        : data::open_image_files(args->images, int(vc.in_chans));
    b.model->to(device);
    EmbedOptions options;
    options.batch = args->batch;
    options.patch_tokens = args->patch_tokens;
    options.l2_normalize = args->l2_normalize;
    options.progress = progress_line("embed");
    const Embeddings e = embed(*b.model, *ds, b.norm, options);

    std::map<std::string, std::string> metadata = model_metadata(vc, b.norm);
    metadata["checkpoint"] = b.path;
    metadata["dataset"] = ds->describe();
    metadata["l2_normalized"] = args->l2_normalize ? "true" : "false";
    if (b.step >= 0) metadata["step"] = std::to_string(b.step);
    save_embeddings(args->out, e, metadata);
    std::printf("wrote %s: %ld x %ld [CLS] features%s of %s, on %s\n", args->out.c_str(),
                long(e.cls.size(0)), long(e.cls.size(1)),
                args->patch_tokens
                    ? str_cat(" and ", vc.grid() * vc.grid(), " patch tokens each").c_str()
                    : "",
                ds->describe().c_str(), describe_device(device).c_str());
    if (args->json)
      std::cout << nlohmann::json{{"out", args->out},
                                  {"rows", e.cls.size(0)},
                                  {"dim", e.cls.size(1)},
                                  {"patch_tokens", args->patch_tokens ? vc.grid() * vc.grid() : 0},
                                  {"dataset", ds->describe()},
                                  {"device", device_name(device)}}
                       .dump()
                << std::endl;
  });
}

}  // namespace dino::tools
