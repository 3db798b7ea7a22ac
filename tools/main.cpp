// The `dino` command line: one binary, one subcommand per job.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dino: train Vision Transformers with DINO self-distillation"};
  app.require_subcommand(1);
  dino::tools::add_train_command(app);
  dino::tools::add_knn_command(app);
  dino::tools::add_attention_command(app);
  dino::tools::add_export_command(app);
  dino::tools::add_embed_command(app);
  dino::tools::add_import_command(app);
  dino::tools::add_plot_command(app);
  dino::tools::add_info_command(app);
  dino::tools::add_check_command(app);
  dino::tools::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dino::Error& e) {
    std::cerr << "dino: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "dino: unexpected error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
