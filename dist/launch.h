#pragma once
// How this process was started: by an MPI launcher (OpenMPI's mpirun, Slurm's srun through
// PMIx or PMI-2, MPICH's hydra) as one of several ranks, or alone. Read from the environment
// the launchers set, before (and without) MPI: a build without MPI uses it to refuse a
// multi-rank launch it cannot serve, and a build with MPI to skip MPI_Init when alone.
#include <string>

namespace dino::dist {

struct Launch {
  int size = 1, rank = 0;              // -1 where the launcher does not say
  int local_size = 1, local_rank = 0;  // ranks on this node
  std::string launcher;                // "OpenMPI", "PMIx", "PMI", or "" when alone
  bool launched() const { return !launcher.empty(); }
};

Launch detect_launch();

}  // namespace dino::dist
