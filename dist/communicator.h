#pragma once
// The collectives of data-parallel training behind one interface: all-reduce (sum or mean),
// broadcast, all-gather, barrier and abort, over tensors on the communicator's device.
// Backends: MPI on host tensors (dist/mpi.h) and NCCL on CUDA tensors (dist/nccl.h), which
// never stage a tensor through the host. Every rank must issue the same collectives in the
// same order, as with MPI and NCCL themselves.
//
// A wait that takes longer than timeout_s() means another rank has died or stopped: the
// communicator then stops the whole job (abort), so no rank is left hanging.
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace dino::dist {

enum class ReduceOp { sum, mean };

// A collective in flight. wait() makes its result visible to what runs next on the tensor's
// device: on the host it returns when the data is there; on CUDA it orders the compute stream
// after the collective, without a host synchronisation. Destroying it without wait() waits.
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
  // Lets the backend move the collective along without waiting (MPI makes progress only
  // inside its calls); the gradient reducer calls it as the backward goes on.
  virtual void progress() {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual const char* backend() const = 0;  // "mpi" or "nccl"
  virtual Device device() const = 0;        // where its tensors live
  int rank() const { return rank_; }
  int size() const { return size_; }

  // In place, on every rank: t <- sum (or mean) of every rank's t. f32 or f64.
  virtual std::unique_ptr<Pending> start_all_reduce(const Tensor& t, ReduceOp op) = 0;
  void all_reduce(const Tensor& t, ReduceOp op) { start_all_reduce(t, op)->wait(); }
  // t <- root's t on every rank (any dtype).
  virtual void broadcast(const Tensor& t, int root) = 0;
  // out (size() * n, ...) <- every rank's in (n, ...), in rank order (any dtype).
  virtual void all_gather(const Tensor& out, const Tensor& in) = 0;
  virtual void barrier() = 0;
  // Prints "[rank r] message" on stderr and stops every rank of the job: the backend's own
  // abort (ncclCommAbort), then the launcher's (MPI_Abort). Safe from any thread.
  [[noreturn]] virtual void abort(const std::string& message) = 0;

  // Seconds a wait may take before the job is aborted as hung.
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double s) { timeout_s_ = s; }
  // Payload bytes this rank has reduced, broadcast or gathered so far (its own part).
  int64_t bytes_communicated() const { return bytes_; }
  // A CUDA graph in which this communicator's collectives were recorded (`bytes` of them) was
  // just launched on the compute stream: they count as communicated, and a backend that
  // watches its collectives for a hang (NCCL) watches the launch until it completes. `what`
  // names the graph in that message, e.g. "step recorded as a CUDA graph".
  virtual void graph_launched(const char* what, int64_t bytes) { count_bytes(bytes); }

 protected:
  Communicator(int rank, int size, double timeout_s)
      : rank_(rank), size_(size), timeout_s_(timeout_s) {}
  void count_bytes(int64_t n) { bytes_ += n; }
  // The checks every backend makes on a collective's tensor.
  void check_tensor(const char* op, const Tensor& t, bool reduce) const;
  // t's data was replaced (drops cached bf16 copies, as any in-place write does).
  static void written(Tensor t) { t.mark_modified(); }

 private:
  int rank_, size_;
  double timeout_s_;
  int64_t bytes_ = 0;
};

}  // namespace dino::dist
