// The fiber scheduler of tests/simt/simt.h.
#include "tests/simt/simt.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// The context switch: saves the callee-saved registers on the current stack, stores the
// stack pointer in *from, loads `to` and restores the registers saved there. glibc's
// swapcontext also saves the signal mask, a system call per switch that took half of the
// emulated test suite's time. x86-64 System V only (CMakeLists.txt builds tests/simt there).
extern "C" void dino_simt_switch(void** from, void* to);
asm(R"(
  .text
  .globl dino_simt_switch
  .type dino_simt_switch, @function
dino_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size dino_simt_switch, .-dino_simt_switch
)");

namespace dino::simt {

namespace {

constexpr size_t kStackBytes = 64 * 1024;

// Fiber stacks, kept from launch to launch (a launch needs one per thread of a block).
char* fiber_stack(size_t i) {
  static std::vector<std::unique_ptr<char[]>> stacks;
  while (stacks.size() <= i) stacks.emplace_back(new char[kStackBytes]);
  return stacks[i].get();
}

struct Barrier {
  int arrived = 0;
  int size = 0;
};

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
  Dim3 tid;
  int linear = 0;
  bool done = false;
  Barrier* waiting = nullptr;
};

struct LaunchState {
  Dim3 grid, block, block_idx;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::vector<unsigned char> shared;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<Slot> slots;  // 32 per warp
  void* scheduler_sp = nullptr;
  unsigned long long block_serial = 0;
  Fiber* current = nullptr;
  std::string error;
};

LaunchState* g_launch = nullptr;

LaunchState& state() { return *g_launch; }
Fiber& me() { return *state().current; }

// First code a fiber runs (entered by dino_simt_switch's ret); it never returns.
void fiber_main() {
  (*state().body)();
  me().done = true;
  dino_simt_switch(&me().sp, state().scheduler_sp);
}

// This fiber arrives at `b`; the last arrival releases everyone waiting on it.
void arrive_and_wait(Barrier& b) {
  LaunchState& L = state();
  if (++b.arrived == b.size) {
    b.arrived = 0;
    for (Fiber& f : L.fibers)
      if (f.waiting == &b) f.waiting = nullptr;
    return;
  }
  Fiber& f = me();
  f.waiting = &b;
  dino_simt_switch(&f.sp, L.scheduler_sp);
}

// A fresh stack that dino_simt_switch can switch to: six zero registers to pop, then
// fiber_main as the return address, placed so that fiber_main starts with the stack
// alignment a call gives (rsp + 8 a multiple of 16).
void start_fiber(Fiber& f, int i, LaunchState& L) {
  f.linear = i;
  f.tid = Dim3{unsigned(i) % L.block.x, (unsigned(i) / L.block.x) % L.block.y,
               unsigned(i) / (L.block.x * L.block.y)};
  f.done = false;
  f.waiting = nullptr;
  auto top = reinterpret_cast<uintptr_t>(fiber_stack(size_t(i)) + kStackBytes) & ~uintptr_t(15);
  auto* slots = reinterpret_cast<void**>(top - 16);
  slots[0] = reinterpret_cast<void*>(&fiber_main);
  slots[1] = nullptr;
  void** sp = slots - 6;
  for (int r = 0; r < 6; ++r) sp[r] = nullptr;
  f.sp = sp;
}

void run_block() {
  LaunchState& L = state();
  static unsigned long long serial = 0;
  L.block_serial = ++serial;
  const int n = int(L.block.x * L.block.y * L.block.z);
  std::memset(L.shared.data(), 0xFF, L.shared.size());
  L.block_barrier = Barrier{0, n};
  for (size_t w = 0; w < L.warp_barriers.size(); ++w)
    L.warp_barriers[w] = Barrier{0, std::min(32, n - int(w) * 32)};
  for (int i = 0; i < n; ++i) start_fiber(L.fibers[size_t(i)], i, L);
  // Odd blocks run their threads last to first: a read of shared memory that another thread
  // writes without a barrier in between then sees the unwritten (NaN) value in one of the two
  // orders, whichever thread is the writer.
  const bool reverse = (L.block_idx.x + L.block_idx.y + L.block_idx.z) % 2 == 1;
  for (;;) {
    bool ran = false, all_done = true;
    for (int k = 0; k < n; ++k) {
      Fiber& f = L.fibers[size_t(reverse ? n - 1 - k : k)];
      if (f.done) continue;
      all_done = false;
      if (f.waiting) continue;
      ran = true;
      L.current = &f;
      dino_simt_switch(&L.scheduler_sp, f.sp);
      if (!L.error.empty()) throw std::runtime_error(L.error);
    }
    if (all_done) return;
    if (!ran)
      throw std::runtime_error("simt: deadlock in block (" + std::to_string(L.block_idx.x) + ", " +
                               std::to_string(L.block_idx.y) +
                               "): threads wait at barriers that cannot complete");
  }
}

}  // namespace

const Dim3& thread_idx() { return me().tid; }
const Dim3& block_idx() { return state().block_idx; }
const Dim3& block_dim() { return state().block; }
const Dim3& grid_dim() { return state().grid; }
unsigned char* dynamic_shared_memory() { return state().shared.data(); }
size_t dynamic_shared_bytes() { return state().shared.size(); }
int lane_id() { return me().linear % 32; }
int thread_linear() { return me().linear; }
unsigned long long block_serial() { return state().block_serial; }

namespace {
// Per thread: the serial of the block in which its cp.async writes landed unfenced, else 0.
std::vector<unsigned long long>& unfenced_writes() {
  static std::vector<unsigned long long> per_thread(1024, 0);
  return per_thread;
}
}  // namespace

void note_unfenced_shared_writes() { unfenced_writes()[size_t(thread_linear())] = block_serial(); }
void fence_shared_writes() { unfenced_writes()[size_t(thread_linear())] = 0; }
int unfenced_shared_writer() {
  const Dim3& b = block_dim();
  const int threads = int(b.x * b.y * b.z);
  for (int i = 0; i < threads; ++i)
    if (unfenced_writes()[size_t(i)] == block_serial()) return i;
  return -1;
}

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
  LaunchState& L = state();
  L.error = message;
  dino_simt_switch(&me().sp, L.scheduler_sp);
  std::abort();  // never resumed
}

bool host_only() {
  static const bool on = [] {
    const char* v = std::getenv("DINO_SIMT_HOST_ONLY");
    return v && std::string(v) == "1";
  }();
  return on;
}

void launch(Dim3 grid, Dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  if (host_only()) return;
  const int n = int(block.x * block.y * block.z);
  if (n <= 0) throw std::runtime_error("simt: empty block");
  LaunchState L;
  L.grid = grid;
  L.block = block;
  L.body = &body;
  L.fibers.resize(size_t(n));
  L.shared.resize(shared_bytes);
  L.warp_barriers.resize(size_t((n + 31) / 32));
  L.slots.resize(L.warp_barriers.size() * 32);
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
