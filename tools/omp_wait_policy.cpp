// libgomp's default spins for a while before sleeping: when another process holds one of the
// cores, a thread done early spins on the CPU that the threads still computing (and the
// loader's) need while the static schedule waits for the slowest one, and a 2-thread
// `dino train` ran 2-9x slower than with sleeping waiters.
//
// libgomp reads its environment in its initialiser, before main(). The executable's
// .preinit_array runs before any shared library's initialiser, so the policy is set there, in
// this process: no second start (a CUDA build spends most of a second in libcublasLt's
// initialisers alone, which a re-exec would pay twice).
#include "tools/omp_wait_policy.h"

#include <unistd.h>

#include <cstdlib>

namespace dino::tools {

namespace {

bool set_passive = false;  // zero-initialised: valid before any initialiser runs

// At this point the C runtime has not yet pointed `environ` at the process's environment (it
// does so again before main()): set it, so that getenv sees the user's variables and setenv
// extends them instead of starting an environment of one.
void prefer_passive_omp_wait(int, char**, char** envp) {
  if (!environ) environ = envp;
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  set_passive = true;
}

__attribute__((section(".preinit_array"),
               used)) void (*const run_before_libraries)(int, char**,
                                                         char**) = prefer_passive_omp_wait;

}  // namespace

void keep_omp_wait_policy_in_environment() {
  if (set_passive) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
}

}  // namespace dino::tools
