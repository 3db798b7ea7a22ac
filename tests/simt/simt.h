#pragma once
// A host emulator of the CUDA execution model: the block scheduler behind the CUDA headers
// in tests/simt/include/, which let the CUDA backend (kernels/cuda/*.cu, unchanged) build and
// run on a machine without a GPU, so tests/cuda runs in every build (tests/simt/README.md).
//
// Every thread of a block is a fiber (ucontext) on one OS thread; fibers run round-robin and
// give way only at __syncthreads, __syncwarp and the warp collectives (shuffles, ldmatrix,
// mma.sync), so a block's threads interleave the way CUDA lets them. Collectives are emulated
// from the PTX ISA's definitions, independently of the kernels that use them. A block whose
// threads wait at barriers that cannot complete (a __syncthreads some threads skip) is
// reported as a deadlock rather than hanging. Blocks run one after another.
#include <cstddef>
#include <cstdint>
#include <functional>

namespace dino::simt {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

const Dim3& thread_idx();
const Dim3& block_idx();
const Dim3& block_dim();
const Dim3& grid_dim();
unsigned char* dynamic_shared_memory();
size_t dynamic_shared_bytes();

void sync_threads();
void sync_warp();

// Up to 8 words and an address per lane, published by every lane of the warp at once.
struct Slot {
  uint32_t w[8];
  const void* p;
};
// Publishes `mine` and returns all 32 lanes' slots (valid until this lane's next exchange).
const Slot* warp_exchange(const Slot& mine);
int lane_id();
int thread_linear();                // the thread's index within its block
unsigned long long block_serial();  // distinct for every block the emulator runs

// Wgmma's cross-proxy rule (PTX ISA, "Async Proxy"): shared memory written through the
// generic proxy reaches a wgmma (the async proxy) only after the writing thread's
// fence.proxy.async. The emulation tracks the writes it sees, cp.async copies landing at a
// wait: marked here, cleared by the thread's fence; a wgmma refuses to issue while any thread
// of the block has such writes unfenced (stricter than the ISA, which asks it only of the
// writes that wgmma reads).
void note_unfenced_shared_writes();
void fence_shared_writes();
// A thread of this block whose landed cp.async writes have no fence after them, or -1.
int unfenced_shared_writer();

// Stops the launch with `message` (thrown from launch() on the calling thread).
[[noreturn]] void fail(const char* message);

// Runs body once per thread of every block. Dynamic shared memory starts as 0xFF bytes (NaN
// in f32 and bf16), so a read of something never written shows in the results. Throws
// std::runtime_error on a deadlock or a failed check inside the emulation. A last partial
// warp's barriers wait for its own lanes only.
void launch(Dim3 grid, Dim3 block, size_t shared_bytes, const std::function<void()>& body);

// DINO_SIMT_HOST_ONLY=1 in the environment: the device does nothing (kernels, GEMMs, copies
// between device buffers and memsets are skipped; their results are garbage), so a program
// measures only what its host side costs, e.g. the time to queue a training step
// (`dino_simt_cli bench train-step`'s "the host queues a step in ...").
bool host_only();

}  // namespace dino::simt
