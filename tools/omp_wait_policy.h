#pragma once
// `dino` makes OpenMP threads sleep, not spin, while they wait for the others, unless the user
// chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT). libgomp's default spins for a while
// before sleeping: when another process holds one of the cores, a thread done early spins on
// the CPU that the threads still computing (and the loader's) need while the static schedule
// waits for the slowest one, and a 2-thread `dino train` ran 2-9x slower than with sleeping
// waiters. The runtime reads its environment when it is loaded, before main(), so main()
// calls this first: it sets OMP_WAIT_POLICY=PASSIVE and runs the program again.
namespace dino::tools {

void prefer_passive_omp_wait(char** argv);

}  // namespace dino::tools
