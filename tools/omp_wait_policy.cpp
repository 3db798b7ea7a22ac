#include "tools/omp_wait_policy.h"

#include <unistd.h>

#include <cstdlib>

namespace dino::tools {

void prefer_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY");  // no /proc: run on with the runtime's default
}

}  // namespace dino::tools
