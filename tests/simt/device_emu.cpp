// The device intrinsics of the emulated CUDA headers (tests/simt/include): shuffles, bf16
// conversions and the warp-level tensor-core primitives, from the PTX ISA's definitions.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "tests/simt/mma_sm80_emulated.h"
#include "tests/simt/simt.h"

using dino::simt::lane_id;
using dino::simt::Slot;
using dino::simt::warp_exchange;

namespace {

template <class T>
T shuffle_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= 8, "two words per lane");
  Slot s{};
  std::memcpy(s.w, &v, sizeof(T));
  const Slot* all = warp_exchange(s);
  T out;
  std::memcpy(&out, all[lane_id() ^ lane_mask].w, sizeof(T));
  return out;
}

float bf16_bits_to_float(uint16_t bits) {
  dino::bf16 v;
  v.bits = bits;
  return float(v);
}

// Element e (0: low half, 1: high half) of a register holding two bf16.
float half_of(uint32_t word, int e) { return bf16_bits_to_float(uint16_t(e ? word >> 16 : word)); }

uint16_t load_bits(const void* p, int element) {
  uint16_t v;
  std::memcpy(&v, static_cast<const unsigned char*>(p) + 2 * element, 2);
  return v;
}

// ldmatrix: every lane passes one 16-byte row of shared memory at a 16-byte-aligned address;
// returns all 32 lanes' addresses.
const Slot* exchange_rows(const void* row) {
  const unsigned char* base = dino::simt::dynamic_shared_memory();
  const auto* c = static_cast<const unsigned char*>(row);
  if (c < base || c + 16 > base + dino::simt::dynamic_shared_bytes())
    dino::simt::fail("simt: ldmatrix row address outside dynamic shared memory");
  if ((c - base) % 16 != 0) dino::simt::fail("simt: ldmatrix row address not 16-byte aligned");
  Slot s{};
  s.p = row;
  return warp_exchange(s);
}

}  // namespace

float __shfl_xor_sync(unsigned, float v, int lane_mask) { return shuffle_xor(v, lane_mask); }
double __shfl_xor_sync(unsigned, double v, int lane_mask) { return shuffle_xor(v, lane_mask); }

__nv_bfloat16 __float2bfloat16_rn(float f) { return {dino::bf16(f).bits}; }
float __bfloat162float(__nv_bfloat16 v) { return bf16_bits_to_float(v.bits); }

namespace dino::kernels::cuda {

// PTX ISA, ldmatrix .m8n8.x4 .b16: lanes 8j..8j+7 give the row addresses of matrix j; lane l
// receives, in register j, row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j. With .trans,
// rows 2(l%4) and 2(l%4)+1 of column l/4 (the transposed matrix's row l/4).
void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row) {
  const Slot* all = exchange_rows(row);
  const int lane = lane_id();
  for (int j = 0; j < 4; ++j) {
    const void* src = all[8 * j + lane / 4].p;
    r[j] = uint32_t(load_bits(src, 2 * (lane % 4))) | uint32_t(load_bits(src, 2 * (lane % 4) + 1))
                                                          << 16;
  }
}

void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row) {
  const Slot* all = exchange_rows(row);
  const int lane = lane_id();
  for (int j = 0; j < 4; ++j) {
    const void* lo = all[8 * j + 2 * (lane % 4)].p;
    const void* hi = all[8 * j + 2 * (lane % 4) + 1].p;
    r[j] = uint32_t(load_bits(lo, lane / 4)) | uint32_t(load_bits(hi, lane / 4)) << 16;
  }
}

// PTX ISA, mma.m16n8k16 .row.col bf16 -> f32, with g = lane / 4 and t = lane % 4:
//   A (16 x 16): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B (16 x 8):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16 x 8):  c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
// Products of bf16 are exact in f32; the sum is formed in f64 and rounded once.
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Slot s{};
  for (int i = 0; i < 4; ++i) s.w[i] = a[i];
  s.w[4] = b0;
  s.w[5] = b1;
  const Slot* all = warp_exchange(s);
  auto A = [&](int row, int k) {
    const Slot& o = all[(row % 8) * 4 + (k % 8) / 2];
    return half_of(o.w[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
  };
  auto B = [&](int k, int n) {
    const Slot& o = all[n * 4 + (k % 8) / 2];
    return half_of(o.w[4 + (k >= 8 ? 1 : 0)], k % 2);
  };
  const int lane = lane_id(), g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + e % 2;
    double acc = d[e];
    for (int k = 0; k < 16; ++k) acc += double(A(row, k)) * double(B(k, col));
    d[e] = float(acc);
  }
}

// cp.async completes at some point before the issuing thread's wait: the emulation copies at
// the wait and fills the destination with NaN bytes until then, so a thread that reads a tile
// before the copying thread has waited (and the block has synced) reads NaN.
namespace {
struct PendingCopy {
  void* dst;
  const void* src;
  bool valid;
  unsigned long long block;
};
std::vector<PendingCopy>& pending_copies() {
  static std::vector<std::vector<PendingCopy>> per_thread(1024);
  return per_thread[size_t(dino::simt::thread_linear())];
}
}  // namespace

void cp_async_16(void* shared_dst, const void* global_src, bool valid) {
  std::memset(shared_dst, 0xFF, 16);
  pending_copies().push_back({shared_dst, global_src, valid, dino::simt::block_serial()});
}

void cp_async_wait_all() {
  std::vector<PendingCopy>& q = pending_copies();
  for (const PendingCopy& c : q) {
    if (c.block != dino::simt::block_serial()) continue;  // left behind by an earlier block
    dino::simt::note_unfenced_shared_writes();
    if (c.valid)
      std::memcpy(c.dst, c.src, 16);
    else
      std::memset(c.dst, 0, 16);
  }
  q.clear();
}

uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(bf16(lo).bits) | uint32_t(bf16(hi).bits) << 16;
}

}  // namespace dino::kernels::cuda
