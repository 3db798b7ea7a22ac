// The emulated wgmma primitives of tests/simt/wgmma_sm90_emulated.h, from the PTX ISA's
// definitions (section "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): the matrix
// descriptor format, the no-swizzle canonical layouts in shared memory and the register
// fragments of wgmma.mma_async m64nNk16 with .bf16 inputs and .f32 accumulators.
//
// Matrix descriptor (64 bits): bits 0-13 start address >> 4, bits 16-29 leading dimension byte
// offset (LBO) >> 4, bits 32-45 stride dimension byte offset (SBO) >> 4, bits 49-51 base offset,
// bits 62-63 swizzle mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte). The canonical no-swizzle
// layouts, as CuTe layouts in elements with T = 8 (16 bytes of bf16):
//   K-major:  ((8,m),(T,2k)):((1T,SBO),(1,LBO))   row r, k:  (r%8)*T + (r/8)*SBO + k%8 + (k/8)*LBO
//   MN-major: ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO)) mn, k:    mn%8 + (mn/8)*SBO + (k%8)*T +
//   (k/8)*LBO
// i.e. 8x8 core matrices of 128 contiguous bytes (8 rows of 16 bytes), K-major: SBO from one
// 8-row group to the next, LBO from K 0-7 to K 8-15; MN-major: SBO from one group of 8 MN to
// the next, LBO from K 0-7 to K 8-15.
//
// Asynchrony: a wgmma's result is computed when it is issued (the shared memory it reads is read
// then) into a pending record of the issuing thread, keyed by the accumulator's address, and its
// accumulator registers are filled with NaN; wgmma_commit_group() marks the thread's pending
// records committed and wgmma_wait_all() writes the committed ones into their registers. A wgmma
// on an accumulator that still has a pending record accumulates onto the pending value (and
// makes the record uncommitted again: it completes with the next commit and wait). The shared
// memory a wgmma reads must not change until that wait: the wait checks a fingerprint of it.
//
// Checks that stop the launch: a swizzled descriptor or nonzero base offset, an operand outside
// dynamic shared memory, a block that is not whole warpgroups, a wgmma without a wgmma_fence()
// since the block began or the thread's last wait, descriptors that differ within a warpgroup
// (PTX ISA: "must be same across all the warps in the warpgroup"), and operand memory written
// while a wgmma is in flight.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "tests/simt/wgmma_sm90_emulated.h"

using dino::simt::Slot;

namespace {

[[noreturn]] void fail_with(const std::string& message) {
  static std::string kept;  // fail() keeps the pointer's text; this outlives the fiber's stack
  kept = message;
  dino::simt::fail(kept.c_str());
}

float bf16_bits_to_float(uint16_t bits) {
  dino::bf16 v;
  v.bits = bits;
  return float(v);
}

// Element e (0: low half, 1: high half) of a register holding two bf16.
float half_of(uint32_t word, int e) { return bf16_bits_to_float(uint16_t(e ? word >> 16 : word)); }

struct Descriptor {
  size_t start, lbo, sbo;  // bytes
};

Descriptor decode(uint64_t desc, const char* operand) {
  const unsigned swizzle = unsigned(desc >> 62) & 3u;
  const unsigned base_offset = unsigned(desc >> 49) & 7u;
  if (swizzle != 0)
    fail_with(std::string("simt: wgmma descriptor of ") + operand + " has swizzle mode " +
              std::to_string(swizzle) +
              " (bits 62-63): the emulation supports only the no-swizzle layout");
  if (base_offset != 0)
    fail_with(std::string("simt: wgmma descriptor of ") + operand + " has base offset " +
              std::to_string(base_offset) +
              " (bits 49-51): the emulation supports only the no-swizzle layout");
  return Descriptor{size_t(desc & 0x3FFFu) << 4, size_t((desc >> 16) & 0x3FFFu) << 4,
                    size_t((desc >> 32) & 0x3FFFu) << 4};
}

// A 64 x 16 (K-major: rows M or N, 16 K) or 16 x 64 (MN-major: rows K, 64 N) bf16 operand in
// shared memory, read through its decoded descriptor.
struct SharedOperand {
  Descriptor d;
  bool k_major;

  // Byte offset from the start address of element (mn, k).
  size_t offset(int mn, int k) const {
    if (k_major)
      return size_t(mn % 8) * 16 + size_t(mn / 8) * d.sbo + size_t(k % 8) * 2 +
             size_t(k / 8) * d.lbo;
    return size_t(mn % 8) * 2 + size_t(mn / 8) * d.sbo + size_t(k % 8) * 16 + size_t(k / 8) * d.lbo;
  }

  // Every 16-byte row of every core matrix (8 of them for each 8 MN and 8 K) must lie inside
  // dynamic shared memory.
  void check(const char* operand) const {
    const size_t bytes = dino::simt::dynamic_shared_bytes();
    for (int mn = 0; mn < 64; mn += k_major ? 1 : 8)
      for (int k = 0; k < 16; k += k_major ? 8 : 1) {
        const size_t row = d.start + offset(mn, k);
        if (row + 16 > bytes)
          fail_with(std::string("simt: wgmma descriptor of ") + operand + " reaches byte " +
                    std::to_string(row + 16) + ", outside dynamic shared memory (" +
                    std::to_string(bytes) + " bytes)");
      }
  }

  float at(int mn, int k) const {
    uint16_t bits;
    std::memcpy(&bits, dino::simt::dynamic_shared_memory() + d.start + offset(mn, k), 2);
    return bf16_bits_to_float(bits);
  }
};

struct Pending {
  const float* d;
  float value[32];
  bool committed;
};

// The shared memory an issued wgmma reads: the hardware may read it at any time until the wait
// that completes the wgmma, so it must not change until then. The emulation reads it at issue
// and keeps a fingerprint of what this thread read, checked again at the wait.
struct Read {
  bool has_a;  // A from shared memory (ss)
  SharedOperand a, b;
  int warp;
  uint64_t fingerprint;
  bool committed;
};

// FNV-1a over the bits of the operand elements this thread's outputs use (rows 16w + g and
// 16w + g + 8 of A, columns 8j + 2t and 8j + 2t + 1 of B).
uint64_t fingerprint(const Read& r) {
  const unsigned char* smem = dino::simt::dynamic_shared_memory();
  const int lane = dino::simt::lane_id(), g = lane / 4, t = lane % 4;
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const SharedOperand& o, int mn, int k) {
    uint16_t bits;
    std::memcpy(&bits, smem + o.d.start + o.offset(mn, k), 2);
    h = (h ^ bits) * 1099511628211ull;
  };
  for (int k = 0; k < 16; ++k) {
    if (r.has_a) {
      mix(r.a, 16 * r.warp + g, k);
      mix(r.a, 16 * r.warp + g + 8, k);
    }
    for (int j = 0; j < 8; ++j) {
      mix(r.b, 8 * j + 2 * t, k);
      mix(r.b, 8 * j + 2 * t + 1, k);
    }
  }
  return h;
}

// One thread's wgmma state in the block it runs (reset when a new block starts, so nothing
// leaks from one block to the next).
struct ThreadState {
  unsigned long long block = 0;
  std::vector<Pending> pending;
  std::vector<Read> reads;
  bool fenced = false;  // a wgmma_fence() since the block began or this thread's last wait
  size_t issued = 0;    // wgmmas this thread has issued in the block
};

ThreadState& thread_state() {
  static std::vector<ThreadState> per_thread(1024);
  ThreadState& s = per_thread[size_t(dino::simt::thread_linear())];
  if (s.block != dino::simt::block_serial()) {
    s.pending.clear();
    s.reads.clear();
    s.fenced = false;
    s.issued = 0;
    s.block = dino::simt::block_serial();
  }
  return s;
}

// What every thread of a warpgroup issued as its n-th wgmma: the PTX ISA requires the
// descriptors to be the same across all the warps of the warpgroup.
struct Issue {
  int kind;  // 0: ss, 1: rs
  uint64_t desc_a, desc_b;
};

void check_warpgroup_issue(size_t n, const Issue& issue) {
  static unsigned long long block = 0;
  static std::vector<std::vector<Issue>> per_group;
  if (block != dino::simt::block_serial()) {
    per_group.assign(8, {});
    block = dino::simt::block_serial();
  }
  std::vector<Issue>& seen = per_group[size_t(dino::simt::thread_linear() / 128)];
  if (seen.size() == n) {
    seen.push_back(issue);
    return;
  }
  const Issue& first = seen[n];  // n < seen.size(): another thread issued its n-th already
  if (first.kind != issue.kind)
    fail_with("simt: wgmma " + std::to_string(n) + " of thread " +
              std::to_string(dino::simt::thread_linear()) +
              " is not the same instruction as the rest of its warpgroup's (ss and rs mixed)");
  if (first.desc_a != issue.desc_a || first.desc_b != issue.desc_b)
    fail_with("simt: wgmma " + std::to_string(n) + " of thread " +
              std::to_string(dino::simt::thread_linear()) +
              ": its matrix descriptors differ from another thread's of the warpgroup (the PTX "
              "ISA requires them to be the same across all the warps of the warpgroup)");
}

// Warp w = (thread index / 32) % 4 of the warpgroup, after the checks every wgmma makes.
int warp_in_group(ThreadState& s, const Issue& issue) {
  const dino::simt::Dim3& b = dino::simt::block_dim();
  const unsigned threads = b.x * b.y * b.z;
  if (threads % 128 != 0)
    fail_with("simt: wgmma issued in a block of " + std::to_string(threads) +
              " threads, not a multiple of 128 (a warpgroup is 4 whole warps)");
  if (!s.fenced)
    fail_with(
        "simt: wgmma issued without a wgmma_fence() since the block began or since this "
        "thread's last wgmma_wait_all() (wgmma.fence must come before the first wgmma and "
        "between register accesses and a wgmma that reads those registers)");
  if (const int writer = dino::simt::unfenced_shared_writer(); writer >= 0)
    fail_with("simt: wgmma issued while thread " + std::to_string(writer) +
              "'s cp.async writes to shared memory have no fence_proxy_async_shared() after "
              "them (fence.proxy.async: without it the async proxy may not see them)");
  check_warpgroup_issue(s.issued++, issue);
  return (dino::simt::thread_linear() / 32) % 4;
}

// Completes the issue: sum[e] is this thread's output e (row 16w + g (+8), column 8j + 2t (+1))
// of A * B, exactly in double; the result, rounded once to float, goes to the pending record of
// d (onto its pending value or d's registers when accumulating), and d reads NaN until the wait.
void finish(ThreadState& s, float (&d)[32], const double (&sum)[32], bool accumulate) {
  Pending* p = nullptr;
  for (Pending& q : s.pending)
    if (q.d == d) p = &q;
  if (!p) {
    s.pending.push_back(Pending{d, {}, false});
    p = &s.pending.back();
    for (int e = 0; e < 32; ++e) p->value[e] = d[e];
  }
  for (int e = 0; e < 32; ++e)
    p->value[e] = float((accumulate ? double(p->value[e]) : 0.0) + sum[e]);
  p->committed = false;
  for (float& v : d) v = std::numeric_limits<float>::quiet_NaN();
}

// This thread's 32 outputs of A (64 x 16, A(row, k)) times B (16 x 64, B(k, n)).
template <class A, class B>
void products(int warp, double (&sum)[32], const A& a, const B& b) {
  const int lane = dino::simt::lane_id(), g = lane / 4, t = lane % 4;
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * t + e % 2;
      double acc = 0;
      for (int k = 0; k < 16; ++k) acc += double(a(row, k)) * double(b(k, col));
      sum[4 * j + e] = acc;
    }
}

}  // namespace

namespace dino::kernels::cuda {

uint32_t shared_address(const void* p) {
  const unsigned char* base = dino::simt::dynamic_shared_memory();
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < base || c >= base + dino::simt::dynamic_shared_bytes())
    dino::simt::fail("simt: shared_address of a pointer outside dynamic shared memory");
  if ((c - base) % 16 != 0)
    dino::simt::fail(
        "simt: shared_address of a pointer not 16-byte aligned (a descriptor's start address "
        "drops the low 4 bits)");
  return uint32_t(c - base);
}

// Nothing to order in the emulation (registers are written in program order); it records that
// the thread fenced, which a wgmma requires after the block began and after each wait.
void wgmma_fence() { thread_state().fenced = true; }

void wgmma_commit_group() {
  ThreadState& s = thread_state();
  for (Pending& p : s.pending) p.committed = true;
  for (Read& r : s.reads) r.committed = true;
}

void wgmma_wait_all() {
  ThreadState& s = thread_state();
  std::vector<Pending> uncommitted;
  for (const Pending& p : s.pending) {
    if (p.committed)
      std::memcpy(const_cast<float*>(p.d), p.value, sizeof p.value);
    else
      uncommitted.push_back(p);  // not covered by a wait_group: stays in flight (NaN)
  }
  s.pending = std::move(uncommitted);
  std::vector<Read> in_flight;
  for (const Read& r : s.reads) {
    if (!r.committed)
      in_flight.push_back(r);
    else if (fingerprint(r) != r.fingerprint)
      dino::simt::fail(
          "simt: shared memory a wgmma reads was written between its issue and the "
          "wgmma_wait_all() that completes it (the wgmma may read it until then)");
  }
  s.reads = std::move(in_flight);
  s.fenced = false;
}

// The emulation reads shared memory when a wgmma is issued, so the data is there; what the
// fence is for is checked: a wgmma issued while a thread's landed cp.async writes have no fence
// after them stops the launch (simt.h).
void fence_proxy_async_shared() { dino::simt::fence_shared_writes(); }

void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  ThreadState& s = thread_state();
  const int warp = warp_in_group(s, Issue{0, desc_a, desc_b});
  // A collective of the warp (wgmma is .sync.aligned): every lane must reach it.
  Slot mine{};
  mine.p = d;
  dino::simt::warp_exchange(mine);
  const SharedOperand a{decode(desc_a, "A"), true}, b{decode(desc_b, "B"), true};
  a.check("A");
  b.check("B");
  s.reads.push_back(Read{true, a, b, warp, 0, false});
  s.reads.back().fingerprint = fingerprint(s.reads.back());
  double sum[32];
  products(
      warp, sum, [&](int row, int k) { return a.at(row, k); },
      [&](int k, int n) { return b.at(n, k); });
  finish(s, d, sum, accumulate);
}

void wgmma_m64n64k16_rs_mn(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                           bool accumulate) {
  ThreadState& s = thread_state();
  const int warp = warp_in_group(s, Issue{1, 0, desc_b});
  Slot mine{};
  for (int i = 0; i < 4; ++i) mine.w[i] = a[i];
  const Slot* all = dino::simt::warp_exchange(mine);
  const SharedOperand b{decode(desc_b, "B"), false};
  b.check("B");
  s.reads.push_back(Read{false, b, b, warp, 0, false});
  s.reads.back().fingerprint = fingerprint(s.reads.back());
  double sum[32];
  // Row 16w + r of A, k: lane (r % 8) * 4 + (k % 8) / 2 holds it, in register (r >= 8) +
  // 2 (k >= 8), the high half for odd k (mma.sync m16n8k16's A fragment).
  products(
      warp, sum,
      [&](int row, int k) {
        const int r = row % 16;
        const Slot& o = all[(r % 8) * 4 + (k % 8) / 2];
        return half_of(o.w[(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
      },
      [&](int k, int n) { return b.at(n, k); });
  finish(s, d, sum, accumulate);
}

}  // namespace dino::kernels::cuda
