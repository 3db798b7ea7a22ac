#pragma once
// A training run's folder: checkpoint.safetensors, metrics.jsonl and knn.json.
#include <string>

namespace dino {

struct RunFolder {
  std::string dir, checkpoint, metrics, knn;
};

// Checks `dir` before any work and creates nothing. It must be a folder or not exist yet. A
// folder that already holds a run (a checkpoint, or metrics.jsonl with lines in it) is refused
// unless `resume` (continue that run: its checkpoint must be there) or `force` (start over:
// the new run replaces its files as it writes them).
RunFolder check_run_folder(const std::string& dir, bool resume, bool force);
// The paths of the folder's files, with no check (the ranks other than rank 0 of a
// data-parallel run, which read the checkpoint rank 0 checked and write nothing).
RunFolder run_folder_paths(const std::string& dir);

// Creates the folder and its parents, and removes a knn.json left there by an earlier state
// of the run; throws naming the folder.
void create_run_folder(const RunFolder& folder);

}  // namespace dino
