#pragma once
// The MPI backend (builds with DINO_HAS_MPI): MPI's own start-up and abort, and the
// communicator over host tensors on a duplicate of MPI_COMM_WORLD. Non-blocking collectives
// are polled against the communicator's timeout, so a rank whose peer died stops the job
// instead of waiting forever.
#include <memory>

#include "dist/communicator.h"

namespace dino::dist {

struct MpiWorld {
  int size = 1, rank = 0, local_size = 1, local_rank = 0;
};

// MPI_Init_thread (funnelled: only the main thread calls MPI; a watchdog thread may call
// MPI_Abort through abort_job), errors returned rather than fatal, and MPI_Abort registered as
// the last abort step. Once per process.
MpiWorld mpi_init();
void mpi_finalize();

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s);

}  // namespace dino::dist
