#pragma once
// The host emulator's declarations of kernels/cuda/wgmma_sm90.cuh's primitives (same
// signatures), which that header includes instead of its PTX when DINO_SIMT is defined (the
// dino_simt build only; tests/simt/README.md). Implemented in tests/simt/wgmma_emu.cpp from the
// PTX ISA's definitions of wgmma.mma_async, its matrix descriptors and its register fragments.
//
// What the emulation holds a kernel to:
// - A wgmma's accumulator registers are written asynchronously: until the wgmma_wait_all()
//   that covers it they read NaN, so a kernel that reads them before waiting fails its test.
//   wgmmas on the same accumulators before a wait accumulate in the order issued.
// - The shared memory a descriptor names is read when the wgmma is issued: it must be written
//   (and the block synchronised) before that.
// - Descriptors: no-swizzle layout only (a swizzled one stops the launch with a message),
//   every address inside the block's dynamic shared memory and 16-byte aligned.
// Also checked (each stops the launch with a message; wgmma_emu.cpp): a wgmma only with a
// wgmma_fence() since the block began and since the thread's last wgmma_wait_all(); the same
// descriptors across the warpgroup (PTX ISA: "must be same across all the warps in the
// warpgroup"); blocks of whole warpgroups; the shared memory a wgmma reads unchanged until the
// wait that completes it; no thread of the block with landed cp.async writes and no
// fence_proxy_async_shared() after them. A wgmma not yet committed when the thread waits stays in
// flight (its accumulators still NaN).
#include <cstdint>

#include "tests/simt/simt.h"

namespace dino::kernels::cuda {

// The address a descriptor's start field holds (bits 0-13: address >> 4): on the device the
// shared-window address of p, here p's byte offset in the block's dynamic shared memory.
uint32_t shared_address(const void* p);

// wgmma.fence.sync.aligned: orders this thread's register writes before the wgmmas that read
// them (the emulation has nothing to order).
void wgmma_fence();
// wgmma.commit_group.sync.aligned: closes a group of wgmmas.
void wgmma_commit_group();
// wgmma.wait_group.sync.aligned 0: every committed wgmma of this thread has completed.
void wgmma_wait_all();
// fence.proxy.async.shared::cta: makes this thread's earlier shared-memory writes visible to
// wgmma's reads of shared memory (the async proxy).
void fence_proxy_async_shared();

// Warpgroup (4 consecutive warps, 128 threads) matrix products, bf16 in, f32 accumulate:
//   D (64 x 64) = A (64 x 16) * B (16 x 64) + (accumulate ? D : 0)
// Warp w of the warpgroup (w = (thread index / 32) % 4) owns D's rows 16w..16w+15; lane l
// (g = l / 4, t = l % 4) holds d[4j + 0..1] = (row 16w + g, columns 8j + 2t, 8j + 2t + 1) and
// d[4j + 2..3] = (row 16w + g + 8, the same columns), j = 0..7: mma.sync m16n8's accumulator
// layout, once per 8 columns.
//
// A and B from shared memory through descriptors, both K-major (imm-trans-a = imm-trans-b = 0):
// A's rows are M, B's rows are N, each row's 16 K elements in two core matrices.
void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate);
// A from registers: warp w's rows 16w..16w+15 in mma.sync m16n8k16's A fragment layout
// (a[0] = (g, k 2t..2t+1), a[1] = (g + 8, k 2t..), a[2] = (g, k 2t+8..), a[3] = (g + 8, k 2t+8..),
// low half the lower k); B from shared memory through a descriptor, MN-major (imm-trans-b = 1):
// B's rows are K, each row's N elements contiguous in core matrices of 8.
void wgmma_m64n64k16_rs_mn(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                           bool accumulate);

}  // namespace dino::kernels::cuda
