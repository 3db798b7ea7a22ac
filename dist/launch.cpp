#include "dist/launch.h"

#include <cstdlib>

namespace dino::dist {

namespace {

// The integer in environment variable `name`, or `fallback` when unset or not a number.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return *end == '\0' ? int(x) : fallback;
}

}  // namespace

Launch detect_launch() {
  Launch l;
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    l.launcher = "OpenMPI";
    l.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    l.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    l.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    l.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (std::getenv("PMIX_RANK")) {
    // srun --mpi=pmix: PMIx itself names no size in the environment; Slurm does.
    l.launcher = "PMIx";
    l.rank = env_int("PMIX_RANK", 0);
    l.size = env_int("SLURM_NTASKS", -1);
    l.local_rank = env_int("SLURM_LOCALID", 0);
    l.local_size = env_int("SLURM_NTASKS_PER_NODE", -1);
  } else if (std::getenv("PMI_RANK") || std::getenv("PMI_SIZE")) {
    l.launcher = "PMI";
    l.rank = env_int("PMI_RANK", 0);
    l.size = env_int("PMI_SIZE", -1);
    l.local_rank = env_int("MPI_LOCALRANKID", env_int("SLURM_LOCALID", 0));
    l.local_size = env_int("MPI_LOCALNRANKS", -1);
  }
  return l;
}

}  // namespace dino::dist
