#pragma once
// The NCCL backend (dist/nccl.cpp, in builds with NCCL; dist/no_nccl.cpp in the others, where
// make_nccl_communicator throws saying the build has none): collectives on CUDA tensors, on a
// stream of their own. Each collective waits for the compute stream's work queued before it (an
// event) and the compute stream waits for it at Pending::wait (another event), so a reduction runs
// beside the kernels queued after it and nothing synchronises the host. A watchdog thread
// polls ncclCommGetAsyncError and the collectives in flight: an NCCL error, or a collective
// still running after the communicator's timeout (a peer rank died or stopped), aborts the
// communicator (ncclCommAbort) and the job with a message naming the rank and the collective.
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace dino::dist {

// `bootstrap` (a host communicator over the same ranks) carries rank 0's ncclUniqueId to every
// rank, as MPI_Bcast; a world of one needs none (nullptr). The current CUDA device must be
// this rank's GPU.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator* bootstrap, int rank, int size,
                                                     double timeout_s);

// "NCCL 2.28.9" (the library loaded at run time).
std::string nccl_version();

}  // namespace dino::dist
