// KoLeo on CUDA queues its neighbour search on the device: its forward and backward copy
// nothing to the host and make the host wait for nothing, so the training loop can keep
// enqueueing while the device runs (train/train_loop.cpp reads the loss back a step late), and
// the number of device operations does not grow with the batch.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include "core/ops.h"
#include "core/rng.h"
#include "losses/koleo.h"

using namespace dino;
using dino::simt::StreamOp;

namespace {

struct Queued {
  long device_ops = 0;  // kernels and copies between device buffers
  long to_host = 0;     // device-to-host copies
  long host_waits = 0;  // the host waiting for a stream or an event
};

// The stream log of koleo_loss(x) and its backward, for fresh features (B, D) on the device.
Queued koleo_on_device(int64_t B, int64_t D) {
  Rng rng(uint64_t(700 + B));
  Tensor x = Tensor::uniform({B, D}, rng, -1.0, 1.0, DType::f32).to(Device::cuda);
  x.set_requires_grad();
  dino::simt::set_stream_log(true);
  Tensor loss = koleo_loss(x);
  loss.backward();
  const std::vector<StreamOp> log = dino::simt::stream_log();
  dino::simt::set_stream_log(false);
  Queued q;
  for (const StreamOp& op : log) {
    q.device_ops += op.kind == StreamOp::kernel ||
                    (op.kind == StreamOp::copy && op.direction == cudaMemcpyDeviceToDevice);
    q.to_host += op.kind == StreamOp::copy && op.direction == cudaMemcpyDeviceToHost;
    q.host_waits += op.kind == StreamOp::sync_stream || op.kind == StreamOp::sync_event;
  }
  return q;
}

}  // namespace

TEST_CASE("koleo on cuda: no copy to the host, no host wait, O(1) device operations", "[koleo]") {
  const Queued small = koleo_on_device(8, 16);
  const Queued large = koleo_on_device(64, 16);
  INFO("device operations per forward and backward: B = 8: " << small.device_ops
                                                             << ", B = 64: " << large.device_ops);
  CHECK(small.to_host == 0);
  CHECK(large.to_host == 0);
  CHECK(small.host_waits == 0);
  CHECK(large.host_waits == 0);
  CHECK(small.device_ops > 0);
  CHECK(large.device_ops == small.device_ops);
}
