// The `dino` command line: one binary, one subcommand per job.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "core/suggest.h"
#include "dist/abort.h"
#include "tools/commands.h"
#include "tools/omp_wait_policy.h"
#ifdef DINO_HAS_CUDA
#include "benchmarks/cudnn/baselines.h"
#endif

int main(int argc, char** argv) {
  dino::tools::keep_omp_wait_policy_in_environment();
#ifdef DINO_HAS_CUDA
  dino::bench::register_cudnn_attention();  // model.attention=cudnn, in train and bench
#endif
  CLI::App app{"dino: train Vision Transformers with DINO self-distillation"};
  app.require_subcommand(1);
  dino::tools::add_train_command(app);
  dino::tools::add_knn_command(app);
  dino::tools::add_attention_command(app);
  dino::tools::add_export_command(app);
  dino::tools::add_embed_command(app);
  dino::tools::add_import_command(app);
  dino::tools::add_plot_command(app);
  dino::tools::add_config_command(app);
  dino::tools::add_info_command(app);
  dino::tools::add_check_command(app);
  dino::tools::add_bench_command(app);
  // A mistyped subcommand: CLI11 would only say the argument was not expected.
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
      names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::string all;
      for (const std::string& n : names) all += (all.empty() ? "" : ", ") + n;
      std::cerr << "dino: unknown command '" << argv[1] << "'" << dino::did_you_mean(argv[1], names)
                << " (commands: " << all << "; dino --help)\n";
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dino::Error& e) {
    // One rank of several: its error stops the whole job, naming the rank (dist/abort.h).
    if (!dino::dist::rank_prefix().empty()) dino::dist::abort_job(e.what());
    std::cerr << "dino: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    if (!dino::dist::rank_prefix().empty())
      dino::dist::abort_job(dino::str_cat("unexpected error: ", e.what()));
    std::cerr << "dino: unexpected error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
