#pragma once
// Pieces the subcommands share.
#include <memory>
#include <string>
#include <vector>

#include "models/vit.h"
#include "train/backbone_file.h"
#include "train/embed.h"

namespace dino::tools {

// Checks an output file path before any work: not a folder, its folder exists, and it is
// none of `inputs` (an output never replaces what the command reads).
void check_output_file(const std::string& who, const std::string& out,
                       const std::vector<std::string>& inputs);

// Redraws "<label> done/total (pct%) ETA h:mm:ss" on stderr a few times a second and once at
// the end. When stderr is not a terminal (a log file), one line at each quarter instead, so
// logs show progress without filling with carriage returns.
ProgressFn progress_line(std::string label);

// "h:mm:ss".
std::string format_hms(double seconds);

// The same architecture as `trained` at a random initialisation, on its device: the control
// k-NN and `dino embed --random-init` compare against. For a training checkpoint it is the
// student as the run started (same seed); for a backbone file, seed 0.
std::unique_ptr<VisionTransformer> random_init_like(const Backbone& trained);

}  // namespace dino::tools
