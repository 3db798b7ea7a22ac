#pragma once
// Each subcommand registers itself on the CLI11 app (one cmd_<name>.cpp each) and runs from
// its callback. Every subcommand takes --json and then prints one JSON object with its
// results as the last line of stdout.
#include <CLI/CLI.hpp>

namespace dino::tools {

void add_train_command(CLI::App& app);
void add_knn_command(CLI::App& app);
void add_attention_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_embed_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_plot_command(CLI::App& app);
void add_config_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_check_command(CLI::App& app);
void add_bench_command(CLI::App& app);

}  // namespace dino::tools
