// `dino config`: the merged recipe, every key with its value, marking the ones that differ
// from the built-in defaults: what `dino train` with the same arguments would run, or what a
// checkpoint was trained with.
#include <cstdio>
#include <iostream>

#include "core/safetensors.h"
#include "tools/commands.h"
#include "train/config.h"

namespace dino::tools {

namespace {

void flatten(const nlohmann::json& j, const std::string& path,
             std::vector<std::pair<std::string, nlohmann::json>>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    if (it->is_object())
      flatten(*it, key, out);
    else
      out.push_back({key, *it});
  }
}

}  // namespace

void add_config_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, config;
    std::vector<std::string> overrides;
    bool json = false, resolved = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("config",
                                 "Print the merged recipe: every key, its value ('*': "
                                 "differs from the built-in default) and its meaning");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Start from the recipe a training checkpoint was trained with");
  cmd->add_option("--config", args->config,
                  "JSON recipe merged over the defaults (or the checkpoint's recipe)");
  cmd->add_option("overrides", args->overrides, "group.key=value, as `dino train` takes them");
  cmd->add_flag("--json", args->json,
                "Print the merged recipe as one JSON object as the last line of stdout");
  cmd->add_flag("--resolved", args->resolved,
                "With --json: model.embed_dim, depth and num_heads as the run builds them (the "
                "arch preset's where the recipe leaves them 0)");
  cmd->callback([args] {
    const nlohmann::json defaults = default_config();
    nlohmann::json cfg = defaults;
    std::string origin = "the built-in defaults (DINO's ViT-S/16 recipe)";
    if (!args->checkpoint.empty()) {
      const auto md = load_safetensors_metadata(args->checkpoint);
      DINO_CHECK(md.count("config"), "[config] ", args->checkpoint,
                 " holds no training recipe (a backbone "
                 "file from `dino export` or `dino import` has none)");
      nlohmann::json saved;
      try {
        saved = nlohmann::json::parse(md.at("config"));
      } catch (const nlohmann::json::exception& e) {
        throw Error(
            str_cat("[config] ", args->checkpoint, ": corrupt recipe in the metadata: ", e.what()));
      }
      merge_config(cfg, saved, args->checkpoint);
      origin = "the recipe of " + args->checkpoint;
    }
    if (!args->config.empty()) {
      merge_config(cfg, read_recipe_file(args->config), args->config);
      origin += ", then " + args->config;
    }
    for (const std::string& o : args->overrides) apply_override(cfg, o);
    if (!args->overrides.empty())
      origin += str_cat(", then ", args->overrides.size(), " override(s)");
    const Recipe recipe = parse_recipe(cfg, origin);  // the checks `dino train` makes first

    std::vector<std::pair<std::string, nlohmann::json>> rows, base;
    flatten(cfg, "", rows);
    flatten(defaults, "", base);
    size_t width = 0, value_width = 0;
    for (const auto& r : rows) {
      width = std::max(width, r.first.size());
      value_width = std::max(value_width, r.second.dump().size());
    }
    const auto& meanings = recipe_key_meanings();
    std::printf("# %s; '*' marks a value that differs from the default\n", origin.c_str());
    for (size_t i = 0; i < rows.size(); ++i) {
      const bool changed = rows[i].second != base[i].second;
      const auto meaning = meanings.find(rows[i].first);
      std::printf("%c %-*s = %-*s  # %s\n", changed ? '*' : ' ', int(width), rows[i].first.c_str(),
                  int(value_width), rows[i].second.dump().c_str(),
                  meaning == meanings.end() ? "" : meaning->second.c_str());
    }
    if (args->json && args->resolved) {
      // For a script that builds the same model (benchmarks/compare_torch.py): no preset table.
      nlohmann::json& m = cfg["model"];
      m["embed_dim"] = recipe.model.vit.embed_dim;
      m["depth"] = recipe.model.vit.depth;
      m["num_heads"] = recipe.model.vit.num_heads;
    }
    if (args->json) std::cout << cfg.dump() << std::endl;
  });
}

}  // namespace dino::tools
