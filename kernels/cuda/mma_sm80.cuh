#pragma once
// Warp-level tensor-core primitives (sm_80 and later, so sm_90 too) as PTX: ldmatrix,
// mma.sync m16n8k16 bf16 -> f32, 16-byte cp.async with zero fill, bf16 pair packing.
// The host emulator (DINO_SIMT, tests/simt) has no PTX: it declares exactly these signatures
// in tests/simt/mma_sm80_emulated.h, which is how the kernels that use them
// (kernels/cuda/attention_mma.cuh) are tested without a GPU.
#ifdef DINO_SIMT
#include "tests/simt/mma_sm80_emulated.h"
#else
#include <cuda_bf16.h>

#include <cstdint>

namespace dino::kernels::cuda {

__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(128) unsigned char smem[];
  return smem;
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 bf16 matrices; lanes 8j..8j+7 pass the 16-byte-aligned row addresses of matrix j.
// Lane l gets, in r[j], row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

// The same, each matrix transposed on the way: r[j] holds rows 2(l%4), 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

// d (16x8 f32) += a (16x16 bf16, row-major fragments) * b (16x8 bf16, column fragments).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared without passing through registers; zeros when !valid (the source
// is then not read).
__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared_dst)),
               "l"(global_src), "r"(valid ? 16 : 0)
               : "memory");
}

// Waits for every cp.async this thread issued (the caller then syncs the block).
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

// Two floats as bf16 in one register, `lo` in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace dino::kernels::cuda
#endif  // DINO_SIMT
