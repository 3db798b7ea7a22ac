#pragma once
// `dino` makes OpenMP threads sleep, not spin, while they wait for the others, unless the user
// chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT); tools/omp_wait_policy.cpp says why and
// how. The policy is set before the shared libraries start, and the C runtime then hands main()
// the environment the process started with: main() calls this first to put the policy back,
// so that getenv (`dino info`) and child processes see what the OpenMP runtime uses.
namespace dino::tools {

void keep_omp_wait_policy_in_environment();

}  // namespace dino::tools
