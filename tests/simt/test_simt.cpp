// The emulator's own checks (tests/simt/README.md): what it must catch, it catches.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include "tests/simt/simt.h"

using dino::simt::Dim3;

TEST_CASE("the emulator reports a __syncthreads that some threads skip", "[simt]") {
  // Half the block waits at the barrier, the other half has returned: on a GPU this hangs or
  // is undefined.
  CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 0,
                                       [] {
                                         if (threadIdx.x < 32) __syncthreads();
                                       }),
                    Catch::Contains("deadlock"));
}

TEST_CASE("the emulator refuses launches the runtime refuses", "[simt]") {
  int runs = 0;
  cudaGetLastError();
  dino::simt::Launch(dim3(1), dim3(2048)).run([&] { ++runs; });  // > 1024 threads
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  dino::simt::Launch(dim3(1, 70000), dim3(32)).run([&] { ++runs; });  // gridDim.y > 65535
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  dino::simt::Launch(dim3(1), dim3(32), 228 * 1024).run([&] { ++runs; });  // shared memory
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(runs == 0);
  dino::simt::Launch(dim3(2, 3), dim3(40)).run([&] { ++runs; });  // a partial second warp
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(runs == 2 * 3 * 40);
}

TEST_CASE("emulated shuffles exchange within the warp", "[simt]") {
  float got[64];
  dino::simt::launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 0, [&] {
    const int i = int(threadIdx.x);
    got[i] = __shfl_xor_sync(0xffffffffu, float(i), 5);
  });
  for (int i = 0; i < 64; ++i) CHECK(got[i] == float(i ^ 5));
}

TEST_CASE("a capture takes in the streams that wait on its events and must join them back",
          "[simt]") {
  cudaStream_t origin, side;
  REQUIRE(cudaStreamCreateWithFlags(&origin, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t fork, join;
  REQUIRE(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventCreateWithFlags(&join, cudaEventDisableTiming) == cudaSuccess);
  int runs = 0;
  auto work = [&](cudaStream_t s) {
    dino::simt::Launch(dim3(1), dim3(1), 0, s).run([&] { ++runs; });
  };
  cudaStreamCaptureStatus status;

  // Forked by an event and joined back by another: the side stream's work is in the graph.
  REQUIRE(cudaStreamBeginCapture(origin, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  work(origin);
  CHECK(cudaEventRecord(fork, origin) == cudaSuccess);
  CHECK(cudaStreamIsCapturing(side, &status) == cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusNone);
  CHECK(cudaStreamWaitEvent(side, fork, 0) == cudaSuccess);
  CHECK(cudaStreamIsCapturing(side, &status) == cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusActive);
  work(side);
  CHECK(cudaEventRecord(join, side) == cudaSuccess);
  CHECK(cudaEventQuery(join) == cudaErrorCapturedEvent);  // it stands for no work yet
  CHECK(cudaStreamWaitEvent(origin, join, 0) == cudaSuccess);
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(origin, &graph) == cudaSuccess);
  CHECK(runs == 0);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  CHECK(cudaGraphLaunch(exec, origin) == cudaSuccess);
  CHECK(runs == 2);
  CHECK(cudaGraphLaunch(exec, origin) == cudaSuccess);
  CHECK(runs == 4);
  // After the capture the side stream runs its work at once again, and the events recorded in
  // the capture stay unusable until recorded anew.
  CHECK(cudaStreamIsCapturing(side, &status) == cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusNone);
  work(side);
  CHECK(runs == 5);
  CHECK(cudaStreamWaitEvent(origin, join, 0) == cudaErrorCapturedEvent);
  CHECK(cudaEventSynchronize(join) == cudaErrorCapturedEvent);
  CHECK(cudaEventRecord(join, side) == cudaSuccess);
  CHECK(cudaEventQuery(join) == cudaSuccess);
  cudaGetLastError();
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  // Work queued on the side stream after its last join: the capture cannot end.
  REQUIRE(cudaStreamBeginCapture(origin, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  CHECK(cudaEventRecord(fork, origin) == cudaSuccess);
  CHECK(cudaStreamWaitEvent(side, fork, 0) == cudaSuccess);
  work(side);
  CHECK(cudaEventRecord(join, side) == cudaSuccess);
  CHECK(cudaStreamWaitEvent(origin, join, 0) == cudaSuccess);
  work(side);
  CHECK(cudaStreamEndCapture(origin, &graph) == cudaErrorStreamCaptureUnjoined);
  CHECK(graph == nullptr);
  CHECK(runs == 5);
  cudaGetLastError();
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
}
