#pragma once
// The training step with its forwards and backward as one CUDA graph (run.cuda_graph): the
// teacher's and the student's forwards, the loss with its center update and the backward
// (train/step.h forward_backward) are recorded once and replayed by one launch, so the host no
// longer issues a few thousand kernels per step and the device runs them without the gaps
// between launches. The update (clipping, the last-layer freeze, AdamW, the EMA teacher) runs
// after it as dino_step runs it: a handful of launches whose arguments change every step.
//
// What changes from one step to the next reaches the recorded work through device memory the
// host writes before each launch: the crops (copied into the graph's own input buffers), the
// stochastic-depth nonce and the teacher temperature. The step's outputs (the loss, its
// statistics on the device, the logits, the gradients) live in the graph's arena at the same
// addresses on every replay (kernels/cuda/runtime.h), and each step's replaces the last's.
// The results are dino_step's bit for bit: the same kernels in the same order on the same data.
//
// When it records: the first step for a set of crop shapes runs eagerly (it creates the
// optimizer's moments and the bf16 weight copies, and picks the GEMM algorithms); the second
// records and launches; the later ones replay. New shapes start over.
//
// Data-parallel: the collectives the step issues (the gradient buckets' all-reduces, started
// from the backward as their gradients become final, and the loss's center and statistics
// sums) are recorded with it, on the communicator's own stream forked from the step's and
// joined back before it ends, so every replay runs them in the recorded order on every rank.
// The communicator then watches each launch, instead of each collective, for a rank that
// died or stopped.
#include <string>
#include <vector>

#include "core/backend.h"
#include "train/step.h"

namespace dino {
namespace dist {
class Communicator;
}

class StepGraph {
 public:
  StepGraph() = default;
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // dino_step on CUDA with s.defer_stats (the statistics stay on the device, in
  // StepOutputs::pending), through the graph. Data-parallel: `reducer` as dino_step takes it,
  // and `comm`, the device communicator the step's collectives go through (the reducer's and
  // the loss's).
  StepOutputs step(DinoModel& student, DinoModel& teacher, DinoLoss& loss, AdamW& optimizer,
                   const std::vector<Tensor>& crops, const StepSettings& s, DropPathNoise* drop,
                   dist::GradReducer* reducer = nullptr, dist::Communicator* comm = nullptr);

  // The graph in use (recorded), and what it holds; recordings so far.
  bool recorded() const { return graph_ != nullptr; }
  DeviceGraphSize size() const;
  int recordings() const { return recordings_; }

 private:
  void reset(DinoModel& student);

  const Backend* backend_ = nullptr;
  DeviceGraph* graph_ = nullptr;
  std::string shapes_;  // of the crops the graph was recorded for
  bool warmed_ = false;
  int recordings_ = 0;
  std::vector<Tensor> inputs_;  // the crops the graph reads
  StepOutputs outputs_;         // what the recorded forward_backward returned
  // Each trainable parameter's gradient as the graph writes it: handed back before every
  // update, since the update may drop one (the last-layer freeze).
  std::vector<std::pair<Tensor, Tensor>> grads_;
  int64_t graph_bytes_ = 0;  // the payload of the collectives recorded in the graph
};

}  // namespace dino
