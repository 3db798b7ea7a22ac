// The communicator tests' main: every rank of `mpirun -np N dino_dist_tests` runs every test
// case, whose collectives pair up across the ranks. The world is made before Catch2 runs and
// ended after; a rank whose test fails mid-collective leaves its partners waiting, so the
// timeout is short: the job then aborts instead of hanging.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/dist/dist_fixture.h"

namespace dino::test {
dist::World* g_world = nullptr;
}

int main(int argc, char** argv) {
  dino::dist::WorldOptions options;
  options.collectives = "always";
  options.timeout_s = 30;
  dino::dist::World world(options);
  dino::test::g_world = &world;
  world.bind(dino::Device::cpu);
  const int failed = Catch::Session().run(argc, argv);
  // A failure on one rank only must not leave the others in MPI_Finalize: stop the job.
  double mine = failed, any = 0;
  dino::Tensor t = dino::Tensor::from_vector(std::vector<double>{mine}, {1});
  world.host()->all_reduce(t, dino::dist::ReduceOp::sum);
  any = t.item();
  return any > 0 ? 1 : 0;
}
