// `dino train`: the main job. Runs the recipe, then prints the k-NN result.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/error.h"
#include "dist/abort.h"
#include "dist/world.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/trainer.h"

namespace dino::tools {

namespace {

void print_knn(const nlohmann::json& knn) {
  if (knn.empty()) return;
  std::printf("k-NN (k=%d, T=%.2f, %d train / %d test images), top-1 / top-5:\n",
              knn["k"].get<int>(), knn["temperature"].get<double>(), knn["n_train"].get<int>(),
              knn["n_test"].get<int>());
  for (const char* row : {"trained", "random_init", "raw_pixels"})
    std::printf("  %-12s %6.2f%%  %6.2f%%\n", row, knn[row]["top1"].get<double>(),
                knn[row]["top5"].get<double>());
  std::fflush(stdout);
}

// `text` as one shell word.
std::string shell_quote(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789-_./:=,+@%") == std::string::npos)
    return text;
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// One rank's error stops every rank at once, naming it: the others may be waiting in a
// collective this rank will never join (dist/abort.h).
TrainResult train_or_stop_the_job(dist::World& world, const Recipe& recipe,
                                  const TrainOptions& opt) {
  try {
    return train(recipe, opt);
  } catch (const std::exception& e) {
    if (world.size() > 1) dist::abort_job(e.what());
    throw;
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  struct Args {
    std::string config, device = "auto", data, out = "runs/dino";
    bool resume = false, force = false, json = false;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "Train a ViT with DINO, then evaluate it with k-NN");
  cmd->footer("Every recipe key, its value and its meaning: dino config [--config F] [overrides]");
  cmd->add_option("--config", args->config,
                  "JSON recipe (configs/*.json); without it, the built-in "
                  "defaults: DINO's ViT-S/16 recipe");
  cmd->add_option("--device", args->device,
                  "auto (CUDA when a usable GPU is present, else the "
                  "CPU), cpu or cuda (an error without a GPU or in a build without CUDA)")
      ->capture_default_str();
  cmd->add_option("--data", args->data,
                  "Dataset spec, overrides data.dataset (fashion-mnist, "
                  "fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, folder:DIR, synthetic[:k=v,...])");
  cmd->add_option("--out", args->out,
                  "Output folder: checkpoint.safetensors, metrics.jsonl, knn.json")
      ->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue from OUT/checkpoint.safetensors exactly");
  cmd->add_flag("--force", args->force, "Start a new run in an OUT that holds one, replacing it");
  cmd->add_flag("--json", args->json, "Print one JSON object with the results as the last line");
  cmd->add_option("overrides", args->overrides,
                  "Recipe overrides group.key=value, e.g. optim.lr=1e-3");
  cmd->callback([args] {
    // Started by mpirun or srun: one rank of a data-parallel job (dist/world.h); rank 0 prints.
    auto world = std::make_unique<dist::World>(dist::world_options_from_environment());
    const bool root = world->rank() == 0;
    std::vector<std::string> overrides = args->overrides;
    if (!args->data.empty()) overrides.push_back("data.dataset=\"" + args->data + "\"");
    const Recipe recipe = load_recipe(args->config, overrides);
    const std::string with = overrides.empty() ? ""
                                               : str_cat(" with ", overrides.size(), " override",
                                                         overrides.size() == 1 ? "" : "s");
    if (root) {
      if (args->config.empty())
        std::printf(
            "recipe: no --config, so the built-in defaults: DINO's ViT-S/16 recipe (%ld px, %g "
            "epochs of %s; `dino config` lists every key)%s\n",
            long(recipe.model.vit.img_size), recipe.optim.epochs, recipe.data.dataset.c_str(),
            with.c_str());
      else
        std::printf("recipe: %s%s\n", args->config.c_str(), with.c_str());
      std::fflush(stdout);
    }
    TrainOptions opt;
    opt.out_dir = args->out;
    opt.resume = args->resume;
    opt.force = args->force;
    opt.device = args->device;
    opt.stop_on_signals = true;
    opt.knn_progress = progress_line("k-NN features");
    opt.world = world.get();
    const TrainResult r = train_or_stop_the_job(*world, recipe, opt);
    // A rank that exits with a non-zero status makes mpirun kill the others: after a stop
    // signal every rank waits until rank 0 has written its checkpoint and said how to resume.
    auto end_job = [&] {
      if (r.stopped_by && world->host()) world->host()->barrier();
      world.reset();  // every rank is done with its collectives
      if (r.stopped_by) std::exit(128 + r.stopped_by);
    };
    if (!root) return end_job();
    if (r.stopped_by) {
      std::string again = (r.ranks > 1 ? str_cat("mpirun -np ", r.ranks, " ") : std::string()) +
                          "dino train --out " + shell_quote(args->out) + " --resume";
      if (!args->config.empty()) again += " --config " + shell_quote(args->config);
      if (args->device != "auto") again += " --device " + shell_quote(args->device);
      for (const std::string& o : overrides) again += " " + shell_quote(o);
      std::printf("stopped by %s after step %ld (%.2f epochs); checkpoint: %s\nresume with: %s\n",
                  r.stopped_by == SIGINT ? "Ctrl-C (SIGINT)" : "SIGTERM", long(r.steps), r.epochs,
                  r.checkpoint.c_str(), again.c_str());
      if (args->json) std::cout << r.to_json().dump() << std::endl;
      std::fflush(stdout);
      // The shell's convention for a program ended by a signal, so scripts see it did not finish.
      end_job();
    }
    end_job();
    std::printf(
        "trained %ld steps (%.2f epochs) in %.1f s on %s, %.1f images/s (%.1f%% of the time "
        "waiting for data); loss %.4f -> %.4f\n",
        long(r.steps), r.epochs, r.seconds, r.device.c_str(), r.images_per_second,
        100.0 * r.data_wait_fraction, r.first_loss, r.last_loss);
    if (r.collapse_warning)
      std::printf("warning at the end of training: %s\n", r.collapse_warning->c_str());
    std::printf("checkpoint: %s\n", r.checkpoint.c_str());
    print_knn(r.knn);
    if (args->json) std::cout << r.to_json().dump() << std::endl;
  });
}

}  // namespace dino::tools
