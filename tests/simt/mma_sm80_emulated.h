#pragma once
// The host emulator's declarations of kernels/cuda/mma_sm80.cuh's primitives (same
// signatures), which that header includes instead of its PTX when DINO_SIMT is defined (the
// dino_simt build only; tests/simt/README.md). Implemented in tests/simt/device_emu.cpp from
// the PTX ISA's fragment layouts.
#include <cuda_bf16.h>

#include <cstdint>

#include "tests/simt/simt.h"

namespace dino::kernels::cuda {

inline unsigned char* dynamic_smem() { return ::dino::simt::dynamic_shared_memory(); }
void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row);
void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row);
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
// Deferred to the issuing thread's wait, the destination NaN until then (device_emu.cpp).
void cp_async_16(void* shared_dst, const void* global_src, bool valid);
void cp_async_wait_all();
uint32_t pack_bf16x2(float lo, float hi);

}  // namespace dino::kernels::cuda
