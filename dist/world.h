#pragma once
// The ranks of a data-parallel job and their communicators. A process started by an MPI
// launcher (mpirun, srun) joins the launcher's world through MPI; a process started alone is a
// world of one that runs no collective at all, unless asked to (collectives = "always": the
// data-parallel path with one rank, to measure what it costs). A build without MPI refuses a
// launch of several ranks, saying why.
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/launch.h"

namespace dino::dist {

struct WorldOptions {
  std::string collectives = "auto";  // auto | always
  double timeout_s = 60;             // a collective waiting longer aborts the job
};

// The options a user sets for `dino train` and `dino bench train-step` in the environment:
// DINO_DIST_TIMEOUT (seconds a collective may wait for the other ranks before the job is
// stopped as hung: a rank stopped or lost without its launcher noticing; default 60) and
// DINO_DIST_COLLECTIVES (auto, or always: the data-parallel path in a world of one, to measure
// what it costs). Throws naming the variable for a bad value.
WorldOptions world_options_from_environment();

class World {
 public:
  explicit World(const WorldOptions& options = {});
  ~World();  // communicators first, then MPI_Finalize
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // Collectives run (launched by MPI, or collectives = "always").
  bool active() const { return active_; }
  // "2 ranks (OpenMPI, 2 on this node), MPI + NCCL 2.28.9" or "a world of one".
  std::string describe() const;

  // Chooses this rank's share of `device` before anything uses it: on CUDA the GPU of its
  // node-local rank; on the CPU, when several ranks share a node and OMP_NUM_THREADS is unset,
  // cores / local ranks threads each.
  void bind(Device device);
  // The communicator for tensors on `device` (nullptr when !active()): MPI for host tensors,
  // NCCL for CUDA tensors (made on first use; needs bind(Device::cuda) first).
  Communicator* comm(Device device);
  // MPI over host tensors, whatever the training device (nullptr when none).
  Communicator* host() { return host_.get(); }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool active_ = false, mpi_ = false;
  std::string launcher_;
  double timeout_s_ = 60;
  std::unique_ptr<Communicator> host_, device_;
  std::string device_backend_;
};

}  // namespace dino::dist
