#pragma once
// A host emulator of the CUDA execution model, narrow enough to run our warp-level tensor-core
// kernels (kernels/cuda/attention_mma.cuh) on a machine without a GPU.
//
// Every thread of a block is a fiber (ucontext) on one OS thread; fibers run round-robin and
// give way only at __syncthreads, __syncwarp and the warp collectives (shuffles, ldmatrix,
// mma.sync), so a block's threads interleave the way CUDA lets them. Collectives are emulated
// from the PTX ISA's fragment layouts, independently of the kernels that use them. A block
// whose threads wait at different barriers, or at a barrier some threads never reach, is
// reported as a deadlock rather than hanging. Shared memory starts as 0xFF bytes (NaN in f32
// and bf16) so a read of something never written shows in the results. cp.async is a plain
// copy (its waits are no-ops), so races between it and its waits are not caught here.
#include <cmath>
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
unsigned char* shared_memory();

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

// Stops the launch with `message` (thrown from launch() on the calling thread).
[[noreturn]] void fail(const char* message);

// Runs body once per thread of every block (blocks one after another). Throws
// std::runtime_error on a deadlock, a failed check inside the emulation, or a block size
// that is not a whole number of warps.
void launch(Dim3 grid, Dim3 block, size_t shared_bytes, const std::function<void()>& body);

}  // namespace dino::simt

// ---- the CUDA surface the kernels use -------------------------------------------------------
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define threadIdx (::dino::simt::thread_idx())
#define blockIdx (::dino::simt::block_idx())
#define blockDim (::dino::simt::block_dim())
#define gridDim (::dino::simt::grid_dim())

inline void __syncthreads() { ::dino::simt::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::dino::simt::sync_warp(); }
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }

struct __nv_bfloat16 {
  uint16_t bits;
};
__nv_bfloat16 __float2bfloat16_rn(float f);
float __bfloat162float(__nv_bfloat16 v);

struct uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

// ---- the primitives of kernels/cuda/mma_sm80.cuh ---------------------------------------------
namespace dino::kernels::cuda {

inline unsigned char* dynamic_smem() { return ::dino::simt::shared_memory(); }
void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row);
void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row);
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void cp_async_16(void* shared_dst, const void* global_src, bool valid);
inline void cp_async_wait_all() {}
uint32_t pack_bf16x2(float lo, float hi);

}  // namespace dino::kernels::cuda
