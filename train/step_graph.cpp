#include "train/step_graph.h"

#include "core/error.h"
#include "dist/communicator.h"

namespace dino {

namespace {

std::string shapes_of(const std::vector<Tensor>& crops) {
  std::string key;
  for (const Tensor& c : crops) key += c.str() + ";";
  return key;
}

}  // namespace

StepGraph::~StepGraph() {
  // The arena outlives the graph until its last buffer (these handles, the gradients the
  // parameters still hold) is freed.
  if (backend_) backend_->graph_destroy(graph_);
}

DeviceGraphSize StepGraph::size() const {
  return graph_ ? backend_->graph_size(graph_) : DeviceGraphSize{};
}

void StepGraph::reset(DinoModel& student) {
  if (backend_) backend_->graph_destroy(graph_);
  graph_ = nullptr;
  warmed_ = false;
  inputs_.clear();
  outputs_ = StepOutputs{};
  grads_.clear();
  student.zero_grad();  // the old graph's gradients
}

StepOutputs StepGraph::step(DinoModel& student, DinoModel& teacher, DinoLoss& loss,
                            AdamW& optimizer, const std::vector<Tensor>& crops,
                            const StepSettings& s, DropPathNoise* drop, dist::GradReducer* reducer,
                            dist::Communicator* comm) {
  DINO_CHECK(!crops.empty() && crops[0].device() == Device::cuda,
             "[train] run.cuda_graph needs the step on a CUDA device (--device cuda)");
  DINO_CHECK(s.defer_stats,
             "[train] a step through a CUDA graph leaves its statistics on the "
             "device: set StepSettings::defer_stats");
  backend_ = &backend(Device::cuda, "run.cuda_graph");
  const std::string shapes = shapes_of(crops);
  if (shapes != shapes_) {
    reset(student);
    shapes_ = shapes;
  }
  if (!warmed_) {
    warmed_ = true;
    return dino_step(student, teacher, loss, optimizer, crops, s, drop, false, reducer);
  }

  // The step's own values, where the recorded work reads them.
  if (drop) set_drop_path_nonce(*drop, s.drop_path_nonce);
  loss.set_teacher_temp(s.teacher_temp);
  // Collectives recorded now run at the launch below (counted once, when recorded).
  int64_t launched_bytes = graph_bytes_;
  if (!graph_) {
    for (const Tensor& c : crops)
      inputs_.push_back(Tensor::empty(c.shape(), c.dtype(), c.device()));
    for (size_t i = 0; i < crops.size(); ++i) inputs_[i].copy_from(crops[i]);
    const int64_t bytes_before = comm ? comm->bytes_communicated() : 0;
    backend_->graph_begin();
    try {
      outputs_ = forward_backward(student, teacher, loss, inputs_, s, drop, reducer);
    } catch (const std::exception& e) {
      backend_->graph_abort();
      outputs_ = StepOutputs{};
      student.zero_grad();
      throw Error(
          str_cat("[train] run.cuda_graph: the step could not be recorded as a CUDA "
                  "graph: ",
                  e.what(), ". Run with run.cuda_graph=false"));
    }
    graph_ = backend_->graph_end();
    ++recordings_;
    graph_bytes_ = comm ? comm->bytes_communicated() - bytes_before : 0;
    launched_bytes = 0;
    for (auto& [name, p] : trainable_parameters(student)) grads_.push_back({p, p.grad()});
  } else {
    for (size_t i = 0; i < crops.size(); ++i) inputs_[i].copy_from(crops[i]);
    for (auto& [p, g] : grads_) p.set_grad(g);
  }
  backend_->graph_launch(graph_);
  if (comm) comm->graph_launched("step recorded as a CUDA graph", launched_bytes);
  apply_update(student, teacher, optimizer, s);
  StepOutputs out = outputs_;
  out.pending.loss.teacher_temp = s.teacher_temp;
  return out;
}

}  // namespace dino
