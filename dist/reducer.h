#pragma once
// Data-parallel gradient averaging overlapped with the backward, as PyTorch's DDP and llm.c
// do it. The parameters are grouped into buckets of about bucket_bytes in reverse
// registration order, the order a ViT's backward makes them final (the head first, then the
// blocks from the last; within a block fc2 to norm1). Unlike DDP the buckets are never rebuilt
// from an observed order: a fixed bucketing keeps each collective's size, and so the
// reduction's summation order, the same in every run, which a bit-identical resume needs.
// A grad-ready hook (core/autograd.h) per parameter counts the bucket down, and each
// bucket's all-reduce (mean) starts as soon as all its gradients are final, while the backward
// is still running. Buckets start in index order on every rank, because NCCL and MPI need the
// same sequence of collectives everywhere. After finish(), every parameter's .grad is a view
// of its bucket holding the average over the ranks.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.h"

namespace dino::dist {

class GradReducer {
 public:
  // params: the trainable parameters (requires_grad), f32 or f64, on comm's device.
  GradReducer(Communicator& comm, std::vector<std::pair<std::string, Tensor>> params,
              int64_t bucket_bytes = int64_t(25) << 20);
  ~GradReducer();  // removes its hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Before backward(): this step's gradients are not final yet.
  void prepare();
  // After backward(): starts the buckets still waiting, orders the device after every bucket,
  // and hands each parameter its averaged gradient. A parameter the backward gave no gradient
  // is an error (every rank must reduce every bucket).
  void finish();

  struct Bucket {
    std::vector<size_t> params;    // indices into the parameter list, in bucket order
    std::vector<int64_t> offsets;  // element offset of each in `flat`
    int64_t bytes = 0;             // payload (without alignment padding)
    Tensor flat;
  };
  const std::vector<Bucket>& buckets() const { return buckets_; }
  int64_t bytes_per_step() const;
  // Measure, per step, the time the device (CUDA: the compute stream; CPU: the host) waits at
  // finish() for reductions the backward did not hide. Off by default (timing events).
  void set_timing(bool on);
  double last_exposed_ms();  // of the last finish(), when timing is on (synchronises on CUDA)

 private:
  void build_buckets(const std::vector<size_t>& order);
  void on_ready(size_t param);
  void launch(size_t bucket);

  Communicator& comm_;
  std::vector<std::pair<std::string, Tensor>> params_;
  int64_t bucket_bytes_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<int> waiting_;       // per bucket: parameters not final yet this step
  std::vector<bool> ready_;        // per parameter, this step
  std::vector<std::unique_ptr<Pending>> in_flight_;  // per bucket
  size_t next_launch_ = 0;
  bool timing_ = false;
  struct Timing;
  std::unique_ptr<Timing> timing_state_;
};

}  // namespace dino::dist
