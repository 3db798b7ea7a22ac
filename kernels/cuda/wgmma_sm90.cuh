#pragma once
// Warpgroup-level tensor-core primitives of Hopper (sm_90a only) as PTX: wgmma.mma_async
// m64n64k16 bf16 -> f32 with shared-memory matrix descriptors, its fences and waits.
// The host emulator (DINO_SIMT, tests/simt) declares exactly these signatures in
// tests/simt/wgmma_sm90_emulated.h (with what it checks), which is how the kernel that uses
// them (kernels/cuda/attention_sm90.cu) runs without a GPU.
//
// Descriptors (PTX ISA, "Matrix Descriptor Format"), no-swizzle layout only: bits 0-13 the
// tile's shared address >> 4, 16-29 the leading dimension byte offset >> 4, 32-45 the stride
// dimension byte offset >> 4. A core matrix is 8 rows of 16 contiguous bytes (8 bf16).
//   K-major  ((8,m),(8,2k)):((8,SBO),(1,LBO)) elements: LBO = bytes to the next 8 K, SBO = to
//            the next 8 rows of M or N.
//   MN-major ((8,1,m),(8,k)):((1,8,SBO),(8,LBO)): SBO = bytes to the next 8 of M or N, LBO = to
//            the next 8 K.
#include <cstdint>

#include "kernels/cuda/mma_sm80.cuh"

#ifdef DINO_SIMT
#include "tests/simt/wgmma_sm90_emulated.h"
#else
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "kernels/cuda/wgmma_sm90.cuh compiles for sm_90a only (CMakeLists.txt: dino_cuda_sm90a)"
#endif

namespace dino::kernels::cuda {

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Shared memory written by this thread's ordinary stores and cp.async becomes visible to
// wgmma's reads (the async proxy); the block's barrier follows.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// d (64x64 f32, warp w: rows 16w..16w+15 in mma.sync m16n8's layout per 8 columns)
//   = A (64x16, K-major descriptor) * B (16x64, K-major descriptor) + (accumulate ? d : 0)
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b,
                                                   bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(int(accumulate))
      : "memory");
}

// The same with A from registers (warp w's rows in mma.sync m16n8k16's A fragments) and B
// MN-major (rows are K; imm-trans-b = 1).
__device__ __forceinline__ void wgmma_m64n64k16_rs_mn(float (&d)[32], const uint32_t (&a)[4],
                                                      uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, "
      "1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate))
      : "memory");
}

}  // namespace dino::kernels::cuda
#endif  // DINO_SIMT

namespace dino::kernels::cuda {

// Pins the registers a wgmma reads or writes asynchronously (accumulators, register A
// operands) on their side of a wgmma_fence or wait: each value passes through an empty asm, so
// the compiler cannot move an ordinary write of one past the fence before the wgmma, nor a read
// above the wait after it (either is undefined in PTX; ptxas answers it by serialising the
// wgmmas). Called on both sides, as CUTLASS's warpgroup_fence_operand is.
template <int N>
__device__ __forceinline__ void wgmma_fence_operand(float (&r)[N]) {
#ifndef DINO_SIMT
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_fence_operand(uint32_t (&r)[N]) {
#ifndef DINO_SIMT
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
#endif
}

// A no-swizzle descriptor of the tile at `tile` (see the top of this file).
__device__ __forceinline__ uint64_t wgmma_descriptor(const void* tile, uint32_t leading_bytes,
                                                     uint32_t stride_bytes) {
  return uint64_t((shared_address(tile) & 0x3FFFF) >> 4) | uint64_t(leading_bytes >> 4) << 16 |
         uint64_t(stride_bytes >> 4) << 32;
}

// The descriptor of the same layout `bytes` further on (16-byte multiples).
__device__ __forceinline__ uint64_t wgmma_advance(uint64_t desc, uint32_t bytes) {
  return desc + (bytes >> 4);
}

}  // namespace dino::kernels::cuda
