// `dino knn`: DINO's weighted k-NN evaluation of a checkpoint's teacher, beside the same
// architecture at its initial weights and raw pixels, so the number has its controls.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/npy.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "train/knn.h"
#include "train/trainer.h"

namespace dino::tools {

void add_knn_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, data, device = "auto", dump;
    int64_t k = 20, batch = 256;
    double temperature = 0.07;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "knn",
      "Weighted k-NN accuracy of a checkpoint's teacher (train split as the bank, test "
      "split as queries), with random-init and raw-pixel baselines");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Training checkpoint written by `dino train` "
                  "(its teacher), or a backbone file from `dino export` / `dino import`")
      ->required();
  cmd->add_option("--data", args->data,
                  "Dataset spec (default: the checkpoint's data.dataset; "
                  "required for a backbone file), e.g. fashion-mnist, cifar10:DIR, folder:DIR, "
                  "synthetic:n=2000");
  cmd->add_option("--k", args->k, "Neighbours that vote")->capture_default_str();
  cmd->add_option("--temperature", args->temperature, "Vote weight exp(cosine / T)")
      ->capture_default_str();
  cmd->add_option("--batch", args->batch, "Images per forward pass while extracting features")
      ->capture_default_str();
  cmd->add_option("--device", args->device,
                  "auto, cpu or cuda: where the features are extracted "
                  "(the ranking runs on the CPU)")
      ->capture_default_str();
  cmd->add_option("--dump-features", args->dump,
                  "Also write DIR/trainfeat.npy, testfeat.npy (the "
                  "model's L2-normalised [CLS] features) and trainlabels.npy, testlabels.npy, as "
                  "eval_knn.py --dump_features does");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    DINO_CHECK(args->k >= 1, "[knn] --k must be at least 1, got ", args->k);
    DINO_CHECK(args->temperature > 0, "[knn] --temperature must be positive, got ",
               args->temperature);
    DINO_CHECK(args->batch >= 1, "[knn] --batch must be at least 1, got ", args->batch);
    const Device device = resolve_device(args->device, "knn");
    const Backbone trained = load_backbone(args->checkpoint);
    DINO_CHECK(!args->data.empty() || trained.from_training_checkpoint, "[knn] ", args->checkpoint,
               " is a backbone file, which names no dataset: give --data");
    const std::string spec = args->data.empty() ? trained.recipe.data.dataset : args->data;
    trained.model->to(device);
    const auto control = random_init_like(trained);
    const KnnReport r =
        knn_report(*trained.model, *control, spec, {args->k, args->temperature, args->batch},
                   progress_line("k-NN features"));
    if (!args->dump.empty()) {
      std::filesystem::create_directories(args->dump);
      const std::filesystem::path dir(args->dump);
      save_npy((dir / "trainfeat.npy").string(), r.train_features);
      save_npy((dir / "testfeat.npy").string(), r.test_features);
      save_npy((dir / "trainlabels.npy").string(),
               std::vector<int64_t>(r.train_labels.begin(), r.train_labels.end()));
      save_npy((dir / "testlabels.npy").string(),
               std::vector<int64_t>(r.test_labels.begin(), r.test_labels.end()));
    }
    std::printf("k-NN of %s (%s) on %s\n", trained.path.c_str(),
                trained.step >= 0 ? str_cat("step ", trained.step).c_str() : "backbone file",
                r.dataset.c_str());
    std::printf("k=%ld, T=%g, %ld train / %ld test images, %.1f s\n", long(r.trained.k),
                r.trained.temperature, long(r.trained.n_train), long(r.trained.n_test), r.seconds);
    std::printf("  %-12s  top-1    top-5\n", "");
    const std::pair<const char*, const KnnResult*> rows[] = {
        {"trained", &r.trained}, {"random init", &r.random_init}, {"raw pixels", &r.raw_pixels}};
    for (const auto& [name, res] : rows)
      std::printf("  %-12s %6.2f%%  %6.2f%%\n", name, res->top1, res->top5);
    if (r.num_classes < 5)
      std::printf("  (top-5 is 100%% by construction with %ld classes)\n", long(r.num_classes));
    std::fflush(stdout);
    if (!args->dump.empty()) std::printf("features and labels written to %s\n", args->dump.c_str());
    if (args->json) std::cout << to_json(r).dump() << std::endl;
  });
}

}  // namespace dino::tools
