#pragma once
// Training recipes: JSON with nested groups (data, model, head, crops, optim, loss, run).
// Every key has a default (default_config()); a recipe file and "group.key=value" overrides
// may only set keys that exist there, so a typo is an error, not a silently ignored setting.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/multicrop.h"
#include "losses/dino_loss.h"
#include "models/dino_head.h"
#include "models/vit.h"

namespace dino {

nlohmann::json default_config();
// Merges `overrides` into `base` key by key; unknown keys or mismatched types throw, naming
// the key and `origin` (a file path or "command line").
void merge_config(nlohmann::json& base, const nlohmann::json& overrides, const std::string& origin);
// Applies "group.key=value" (value parsed as JSON, else taken as a string).
void apply_override(nlohmann::json& cfg, const std::string& assignment);
// default_config() <- file (if any) <- overrides.
nlohmann::json load_config(const std::string& path, const std::vector<std::string>& overrides);

// The typed pieces, read from a merged config. in_chans comes from the dataset.
VitConfig vit_config(const nlohmann::json& cfg, int64_t in_chans);
HeadConfig head_config(const nlohmann::json& cfg, int64_t embed_dim);
DinoLossConfig loss_config(const nlohmann::json& cfg);
data::MultiCropConfig multicrop_config(const nlohmann::json& cfg, int channels);

}  // namespace dino
