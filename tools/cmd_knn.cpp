// `dino knn`: DINO's weighted k-NN evaluation of a checkpoint's teacher, beside the same
// architecture at its initial weights and raw pixels, so the number has its controls.
#include <cstdio>
#include <iostream>

#include "tools/cli_util.h"
#include "tools/commands.h"
#include "train/trainer.h"

namespace dino::tools {

void add_knn_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, data, device = "auto";
    int64_t k = 20, batch = 256;
    double temperature = 0.07;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "knn", "Weighted k-NN accuracy of a checkpoint's teacher (train split as the bank, test "
             "split as queries), with random-init and raw-pixel baselines");
  cmd->add_option("--checkpoint", args->checkpoint, "Training checkpoint (.safetensors) written by `dino train`")
      ->required();
  cmd->add_option("--data", args->data, "Dataset spec (default: the checkpoint's data.dataset), e.g. "
                  "fashion-mnist, cifar10:DIR, folder:DIR, synthetic:n=2000");
  cmd->add_option("--k", args->k, "Neighbours that vote")->capture_default_str();
  cmd->add_option("--temperature", args->temperature, "Vote weight exp(cosine / T)")->capture_default_str();
  cmd->add_option("--batch", args->batch, "Images per forward pass while extracting features")
      ->capture_default_str();
  cmd->add_option("--device", args->device, "auto, cpu or cuda: where the features are extracted "
                  "(the ranking runs on the CPU)")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args] {
    DINO_CHECK(args->k >= 1, "[knn] --k must be at least 1, got ", args->k);
    DINO_CHECK(args->temperature > 0, "[knn] --temperature must be positive, got ", args->temperature);
    DINO_CHECK(args->batch >= 1, "[knn] --batch must be at least 1, got ", args->batch);
    const Device device = resolve_device(args->device, "knn");
    const Checkpoint ck = open_checkpoint(args->checkpoint);
    const auto teacher = load_teacher_backbone(ck);
    teacher->to(device);  // knn_report runs the random-init control where the teacher is
    const KnnReport r = knn_report(*teacher, ck.recipe, ck.meta.in_chans, args->data,
                                   {args->k, args->temperature, args->batch},
                                   progress_line("k-NN features"));
    std::printf("k-NN of %s (step %ld) on %s\n", ck.path.c_str(), long(ck.meta.step), r.dataset.c_str());
    std::printf("k=%ld, T=%g, %ld train / %ld test images, %.1f s\n", long(r.trained.k),
                r.trained.temperature, long(r.trained.n_train), long(r.trained.n_test), r.seconds);
    std::printf("  %-12s  top-1    top-5\n", "");
    const std::pair<const char*, const KnnResult*> rows[] = {
        {"trained", &r.trained}, {"random init", &r.random_init}, {"raw pixels", &r.raw_pixels}};
    for (const auto& [name, res] : rows)
      std::printf("  %-12s %6.2f%%  %6.2f%%\n", name, res->top1, res->top5);
    if (r.num_classes < 5) std::printf("  (top-5 is 100%% by construction with %ld classes)\n", long(r.num_classes));
    std::fflush(stdout);
    if (args->json) std::cout << to_json(r).dump() << std::endl;
  });
}

}  // namespace dino::tools
