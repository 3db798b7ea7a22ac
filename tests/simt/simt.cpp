// The fiber scheduler and the emulated collectives of tests/simt/simt.h.
#include "tests/simt/simt.h"

#include <ucontext.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dino::simt {

namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Barrier {
  int arrived = 0;
  int size = 0;
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  Dim3 tid;
  int linear = 0;
  bool done = false;
  Barrier* waiting = nullptr;
};

struct Launch {
  Dim3 grid, block, block_idx;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::vector<unsigned char> shared;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<Slot> slots;  // 32 per warp
  ucontext_t scheduler;
  Fiber* current = nullptr;
  std::string error;
};

Launch* g_launch = nullptr;

Launch& state() { return *g_launch; }
Fiber& me() { return *state().current; }

void fiber_main() {
  (*state().body)();
  me().done = true;
  // uc_link returns to the scheduler.
}

// This fiber arrives at `b`; the last arrival releases everyone waiting on it.
void arrive_and_wait(Barrier& b) {
  Launch& L = state();
  if (++b.arrived == b.size) {
    b.arrived = 0;
    for (Fiber& f : L.fibers)
      if (f.waiting == &b) f.waiting = nullptr;
    return;
  }
  Fiber& f = me();
  f.waiting = &b;
  swapcontext(&f.context, &L.scheduler);
}

void run_block() {
  Launch& L = state();
  const int n = int(L.block.x * L.block.y * L.block.z);
  std::memset(L.shared.data(), 0xFF, L.shared.size());
  L.block_barrier = Barrier{0, n};
  for (Barrier& w : L.warp_barriers) w = Barrier{0, 32};
  for (int i = 0; i < n; ++i) {
    Fiber& f = L.fibers[size_t(i)];
    f.linear = i;
    f.tid = Dim3{unsigned(i) % L.block.x, (unsigned(i) / L.block.x) % L.block.y,
                 unsigned(i) / (L.block.x * L.block.y)};
    f.done = false;
    f.waiting = nullptr;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &L.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  for (;;) {
    bool ran = false, all_done = true;
    for (Fiber& f : L.fibers) {
      if (f.done) continue;
      all_done = false;
      if (f.waiting) continue;
      ran = true;
      L.current = &f;
      swapcontext(&L.scheduler, &f.context);
      if (!L.error.empty()) throw std::runtime_error(L.error);
    }
    if (all_done) return;
    if (!ran)
      throw std::runtime_error(
          "simt: deadlock in block (" + std::to_string(L.block_idx.x) + ", " +
          std::to_string(L.block_idx.y) + "): threads wait at barriers that cannot complete");
  }
}

float bf16_to_float(uint16_t bits) {
  bf16 v;
  v.bits = bits;
  return float(v);
}

// Element e (0 or 1) of a packed pair of bf16.
float half_of(uint32_t word, int e) { return bf16_to_float(uint16_t(e ? word >> 16 : word)); }

uint16_t load_bits(const void* p, int element) {
  uint16_t v;
  std::memcpy(&v, static_cast<const unsigned char*>(p) + 2 * element, 2);
  return v;
}

void check_shared_row(const void* p) {
  const Launch& L = state();
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < L.shared.data() || c + 16 > L.shared.data() + L.shared.size())
    fail("simt: ldmatrix row address outside shared memory");
  if ((c - L.shared.data()) % 16 != 0) fail("simt: ldmatrix row address not 16-byte aligned");
}

}  // namespace

const Dim3& thread_idx() { return me().tid; }
const Dim3& block_idx() { return state().block_idx; }
const Dim3& block_dim() { return state().block; }
const Dim3& grid_dim() { return state().grid; }
unsigned char* shared_memory() { return state().shared.data(); }
int lane_id() { return me().linear % 32; }

void sync_threads() { arrive_and_wait(state().block_barrier); }
void sync_warp() { arrive_and_wait(state().warp_barriers[size_t(me().linear / 32)]); }

const Slot* warp_exchange(const Slot& mine) {
  const int warp = me().linear / 32;
  Slot* slots = state().slots.data() + size_t(warp) * 32;
  sync_warp();  // every lane is done reading the previous exchange
  slots[lane_id()] = mine;
  sync_warp();  // every lane has published
  return slots;
}

void fail(const char* message) {
  Launch& L = state();
  L.error = message;
  swapcontext(&me().context, &L.scheduler);
  std::abort();  // never resumed
}

void launch(Dim3 grid, Dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  const int n = int(block.x * block.y * block.z);
  if (n <= 0 || n % 32 != 0) throw std::runtime_error("simt: block size must be whole warps");
  Launch L;
  L.grid = grid;
  L.block = block;
  L.body = &body;
  L.fibers.resize(size_t(n));
  for (Fiber& f : L.fibers) f.stack.reset(new char[kStackBytes]);
  L.shared.resize(shared_bytes);
  L.warp_barriers.resize(size_t(n / 32));
  L.slots.resize(size_t(n));
  g_launch = &L;
  struct Reset {
    ~Reset() { g_launch = nullptr; }
  } reset;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        L.block_idx = Dim3{x, y, z};
        run_block();
      }
}

}  // namespace dino::simt

using dino::simt::Slot;
using dino::simt::warp_exchange;

float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  Slot s{};
  std::memcpy(&s.w[0], &v, 4);
  const Slot* all = warp_exchange(s);
  float out;
  std::memcpy(&out, &all[dino::simt::lane_id() ^ lane_mask].w[0], 4);
  return out;
}

__nv_bfloat16 __float2bfloat16_rn(float f) { return {dino::bf16(f).bits}; }
float __bfloat162float(__nv_bfloat16 v) { return dino::simt::bf16_to_float(v.bits); }

namespace dino::kernels::cuda {

using simt::half_of;
using simt::load_bits;

// PTX ISA, ldmatrix .m8n8.x4: lanes 8j..8j+7 give the row addresses of matrix j; lane l
// receives, in register j, row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (with .trans,
// row 2(l%4) and 2(l%4)+1 of column l/4, i.e. of the transposed matrix).
void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row) {
  simt::check_shared_row(row);
  Slot s{};
  s.p = row;
  const Slot* all = warp_exchange(s);
  const int lane = simt::lane_id();
  for (int j = 0; j < 4; ++j) {
    const void* src = all[8 * j + lane / 4].p;
    r[j] = uint32_t(load_bits(src, 2 * (lane % 4))) |
           uint32_t(load_bits(src, 2 * (lane % 4) + 1)) << 16;
  }
}

void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row) {
  simt::check_shared_row(row);
  Slot s{};
  s.p = row;
  const Slot* all = warp_exchange(s);
  const int lane = simt::lane_id();
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
  const int lane = simt::lane_id(), g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + e % 2;
    double acc = d[e];
    for (int k = 0; k < 16; ++k) acc += double(A(row, k)) * double(B(k, col));
    d[e] = float(acc);
  }
}

void cp_async_16(void* shared_dst, const void* global_src, bool valid) {
  if (valid)
    std::memcpy(shared_dst, global_src, 16);
  else
    std::memset(shared_dst, 0, 16);
}

uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(bf16(lo).bits) | uint32_t(bf16(hi).bits) << 16;
}

}  // namespace dino::kernels::cuda
