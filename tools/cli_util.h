#pragma once
// Pieces the evaluation subcommands (knn, attention, export) share.
#include <memory>
#include <string>
#include <vector>

#include "models/vit.h"
#include "train/checkpoint.h"
#include "train/knn.h"

namespace dino::tools {

// read_checkpoint, with plain messages for a path that is missing or a directory.
Checkpoint open_checkpoint(const std::string& path);

// The teacher backbone of a checkpoint, without its head: evaluation never runs the head, and
// building the default 65536-way one would cost more than loading the backbone. Refuses a
// checkpoint whose weights are not finite: nothing could be computed from them.
std::unique_ptr<VisionTransformer> load_teacher_backbone(const Checkpoint& ck);

// Checks an output file path before any work: not a folder, its folder exists, and it is
// none of `inputs` (an output never replaces what the command reads).
void check_output_file(const std::string& who, const std::string& out,
                       const std::vector<std::string>& inputs);

// Redraws "<label> done/total (pct%)" on stderr, a few times a second and once at the end;
// silent when stderr is not a terminal, so logs do not fill with carriage returns.
ProgressFn progress_line(std::string label);

}  // namespace dino::tools
