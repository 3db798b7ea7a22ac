// The emulated wgmma (tests/simt/wgmma_emu.cpp) against a plain double matmul: operands laid
// out in shared memory in the PTX ISA's no-swizzle canonical layouts with padded, non-adjacent
// core matrices, descriptors built here from the ISA's bit layout, and the checks the emulation
// makes of a kernel (asynchrony, descriptor scope, fences, warpgroup shape and uniformity,
// operand memory unchanged while a wgmma is in flight).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "tests/simt/mma_sm80_emulated.h"
#include "tests/simt/simt.h"
#include "tests/simt/wgmma_sm90_emulated.h"

namespace {

namespace kc = dino::kernels::cuda;
using dino::simt::Dim3;

// PTX ISA, "Matrix Descriptor Format": bits 0-13 start address, 16-29 leading dimension byte
// offset, 32-45 stride dimension byte offset, each encoded as (x & 0x3FFFF) >> 4; bits 62-63 the
// swizzle mode (0: none).
uint64_t descriptor(uint32_t start, uint32_t lbo, uint32_t sbo, unsigned swizzle = 0) {
  auto encode = [](uint32_t x) { return uint64_t((x & 0x3FFFFu) >> 4); };
  return encode(start) | encode(lbo) << 16 | encode(sbo) << 32 | uint64_t(swizzle) << 62;
}

// Byte offsets of element (mn, k) of one k16 step's tile in the no-swizzle canonical layouts
// (T = 8 bf16 = 16 bytes): K-major ((8,m),(T,2k)):((1T,SBO),(1,LBO)), MN-major
// ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO)).
size_t k_major(int mn, int k, size_t lbo, size_t sbo) {
  return size_t(mn % 8) * 16 + size_t(mn / 8) * sbo + size_t(k % 8) * 2 + size_t(k / 8) * lbo;
}
size_t mn_major(int mn, int k, size_t lbo, size_t sbo) {
  return size_t(mn % 8) * 2 + size_t(mn / 8) * sbo + size_t(k % 8) * 16 + size_t(k / 8) * lbo;
}

// Random values exactly representable in bf16.
std::vector<float> random_bf16(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = float(dino::bf16(u(rng)));
  return v;
}

void store_bf16(unsigned char* smem, size_t offset, float v) {
  const uint16_t bits = dino::bf16(v).bits;
  std::memcpy(smem + offset, &bits, 2);
}

uint32_t pack(float lo, float hi) {
  return uint32_t(dino::bf16(lo).bits) | uint32_t(dino::bf16(hi).bits) << 16;
}

// The header's accumulator layout: warp w of the warpgroup, lane l (g = l / 4, t = l % 4):
// d[4j + e] = (row 16w + g + 8 (e >= 2), column 8j + 2t + e % 2).
void scatter(const float (&d)[32], int thread, float* out /* 64 x 64, row-major */) {
  const int w = (thread / 32) % 4, lane = thread % 32, g = lane / 4, t = lane % 4;
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 4; ++e)
      out[(16 * w + g + (e >= 2 ? 8 : 0)) * 64 + 8 * j + 2 * t + e % 2] = d[4 * j + e];
}

// D (64 x 64) against A (64 x K, row-major) times B (K x 64, row-major) in double: within 1e-5
// of the sum of the products' magnitudes.
void check_product(const float* got, const std::vector<float>& a, const std::vector<float>& b,
                   int K) {
  int bad = 0;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      double ref = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        ref += double(a[size_t(i * K + k)]) * double(b[size_t(k * 64 + j)]);
        mag += std::fabs(double(a[size_t(i * K + k)]) * double(b[size_t(k * 64 + j)]));
      }
      const double err = std::fabs(double(got[i * 64 + j]) - ref);
      if (!(err <= 1e-5 * mag + 1e-30)) {
        if (bad == 0) {
          INFO("D(" << i << ", " << j << ") = " << got[i * 64 + j] << ", expected " << ref);
          CHECK(err <= 1e-5 * mag);
        }
        ++bad;
      }
    }
  CHECK(bad == 0);
}

// A (64 x K) K-major at `base`, k16 step s at base + s * step: SBO 144 (16 bytes of padding
// after each 8-row core matrix), LBO 1200 (the two K halves far apart).
constexpr uint32_t kA_SBO = 144, kA_LBO = 1200, kA_Step = 2 * kA_LBO + 32;
// B (K x 64) K-major (rows N): SBO 256 (the 8-row groups 128 bytes apart), LBO 128.
constexpr uint32_t kB_SBO = 256, kB_LBO = 128, kB_Step = 8 * kB_SBO + 512;
// B (K x 64) MN-major: SBO 176 (groups of 8 N not adjacent), LBO 1664.
constexpr uint32_t kBmn_SBO = 176, kBmn_LBO = 1664, kBmn_Step = 2 * kBmn_LBO;

void store_a_k_major(unsigned char* smem, uint32_t base, const std::vector<float>& a, int K) {
  for (int s = 0; s < K / 16; ++s)
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 16; ++k)
        store_bf16(smem, base + s * kA_Step + k_major(m, k, kA_LBO, kA_SBO),
                   a[size_t(m * K + 16 * s + k)]);
}
void store_b_k_major(unsigned char* smem, uint32_t base, const std::vector<float>& b, int K) {
  for (int s = 0; s < K / 16; ++s)
    for (int n = 0; n < 64; ++n)
      for (int k = 0; k < 16; ++k)
        store_bf16(smem, base + s * kB_Step + k_major(n, k, kB_LBO, kB_SBO),
                   b[size_t((16 * s + k) * 64 + n)]);
}
void store_b_mn_major(unsigned char* smem, uint32_t base, const std::vector<float>& b, int K) {
  for (int s = 0; s < K / 16; ++s)
    for (int n = 0; n < 64; ++n)
      for (int k = 0; k < 16; ++k)
        store_bf16(smem, base + s * kBmn_Step + mn_major(n, k, kBmn_LBO, kBmn_SBO),
                   b[size_t((16 * s + k) * 64 + n)]);
}

// This thread's A fragment of k16 step s for wgmma_m64n64k16_rs_mn (mma.sync m16n8k16's A
// layout over warp w's rows 16w..16w+15).
void a_fragment(uint32_t (&frag)[4], const std::vector<float>& a, int K, int s, int thread) {
  const int w = (thread / 32) % 4, lane = thread % 32, g = lane / 4, t = lane % 4;
  const int r0 = 16 * w + g, r1 = r0 + 8, k0 = 16 * s + 2 * t;
  auto at = [&](int r, int k) { return a[size_t(r * K + k)]; };
  frag[0] = pack(at(r0, k0), at(r0, k0 + 1));
  frag[1] = pack(at(r1, k0), at(r1, k0 + 1));
  frag[2] = pack(at(r0, k0 + 8), at(r0, k0 + 9));
  frag[3] = pack(at(r1, k0 + 8), at(r1, k0 + 9));
}

bool all_nan(const float (&d)[32]) {
  for (float v : d)
    if (!std::isnan(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("emulated wgmma ss: K-major A and B through descriptors, a K loop of chained k16 steps",
          "[simt]") {
  constexpr int K = 64;
  constexpr uint32_t a_base = 0, b_base = a_base + (K / 16) * kA_Step + 256;
  constexpr size_t bytes = b_base + (K / 16) * kB_Step;
  const std::vector<float> a = random_bf16(64 * K, 1), b = random_bf16(size_t(K) * 64, 2);
  std::vector<float> out(2 * 64 * 64, 0.f);
  std::vector<int> nan_before_wait(2 * 128, 0);
  // Two blocks: the second runs its threads in reverse order.
  dino::simt::launch(Dim3{2, 1, 1}, Dim3{128, 1, 1}, bytes, [&] {
    const int tid = dino::simt::thread_linear(), block = int(dino::simt::block_idx().x);
    unsigned char* smem = dino::simt::dynamic_shared_memory();
    if (tid == 0) {
      store_a_k_major(smem, a_base, a, K);
      store_b_k_major(smem, b_base, b, K);
      kc::fence_proxy_async_shared();
    }
    dino::simt::sync_threads();
    float d[32];
    for (float& v : d) v = 1e6f;  // overwritten: the first step does not accumulate
    kc::wgmma_fence();
    for (int s = 0; s < K / 16; ++s)
      kc::wgmma_m64n64k16_ss(
          d, descriptor(kc::shared_address(smem + a_base + s * kA_Step), kA_LBO, kA_SBO),
          descriptor(kc::shared_address(smem + b_base + s * kB_Step), kB_LBO, kB_SBO), s > 0);
    kc::wgmma_commit_group();
    nan_before_wait[size_t(block * 128 + tid)] = all_nan(d);
    kc::wgmma_wait_all();
    scatter(d, tid, out.data() + block * 64 * 64);
  });
  for (int i = 0; i < 2 * 128; ++i) CHECK(nan_before_wait[size_t(i)] == 1);
  check_product(out.data(), a, b, K);
  check_product(out.data() + 64 * 64, a, b, K);
}

TEST_CASE("emulated wgmma rs: A fragments from registers, MN-major B, waits inside the K loop",
          "[simt]") {
  constexpr int K = 64;
  constexpr uint32_t b_base = 64;  // a nonzero start address
  constexpr size_t bytes = b_base + (K / 16) * kBmn_Step;
  const std::vector<float> a = random_bf16(64 * K, 3), b = random_bf16(size_t(K) * 64, 4);
  std::vector<float> out(64 * 64, 0.f);
  int nan_after_first_issue = 0;
  dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, [&] {
    const int tid = dino::simt::thread_linear();
    unsigned char* smem = dino::simt::dynamic_shared_memory();
    // Every thread writes a share of B: read only after the barrier.
    for (int n = tid % 64; n < 64; n += 64)
      for (int k = (tid / 64) * (K / 2); k < (tid / 64 + 1) * (K / 2); ++k)
        store_bf16(smem, b_base + (k / 16) * kBmn_Step + mn_major(n, k % 16, kBmn_LBO, kBmn_SBO),
                   b[size_t(k * 64 + n)]);
    kc::fence_proxy_async_shared();
    dino::simt::sync_threads();
    float d[32];
    uint32_t frag[4];
    // Steps 0-1 chained on the pending accumulator, a wait, then steps 2-3 accumulate onto
    // the registers the wait wrote.
    for (int half = 0; half < 2; ++half) {
      kc::wgmma_fence();
      for (int s = 2 * half; s < 2 * half + 2; ++s) {
        a_fragment(frag, a, K, s, tid);
        kc::wgmma_m64n64k16_rs_mn(d, frag, descriptor(b_base + s * kBmn_Step, kBmn_LBO, kBmn_SBO),
                                  s > 0);
        if (s == 0 && all_nan(d)) ++nan_after_first_issue;
      }
      kc::wgmma_commit_group();
      kc::wgmma_wait_all();
    }
    scatter(d, tid, out.data());
  });
  CHECK(nan_after_first_issue == 128);
  check_product(out.data(), a, b, K);
}

TEST_CASE("emulated wgmma: two warpgroups of a block work on different tiles", "[simt]") {
  constexpr int K = 32;
  // Warpgroup 0: ss on A0, B0 (K-major); warpgroup 1: rs on A1 (registers), B1 (MN-major).
  constexpr uint32_t a0_base = 0, b0_base = a0_base + (K / 16) * kA_Step,
                     b1_base = b0_base + (K / 16) * kB_Step + 16;
  constexpr size_t bytes = b1_base + (K / 16) * kBmn_Step;
  const std::vector<float> a0 = random_bf16(64 * K, 5), b0 = random_bf16(size_t(K) * 64, 6),
                           a1 = random_bf16(64 * K, 7), b1 = random_bf16(size_t(K) * 64, 8);
  std::vector<float> out(2 * 64 * 64, 0.f);
  dino::simt::launch(Dim3{1, 1, 1}, Dim3{256, 1, 1}, bytes, [&] {
    const int tid = dino::simt::thread_linear(), group = tid / 128;
    unsigned char* smem = dino::simt::dynamic_shared_memory();
    if (tid == 255) {
      store_a_k_major(smem, a0_base, a0, K);
      store_b_k_major(smem, b0_base, b0, K);
      store_b_mn_major(smem, b1_base, b1, K);
      kc::fence_proxy_async_shared();
    }
    dino::simt::sync_threads();
    float d[32];
    kc::wgmma_fence();
    for (int s = 0; s < K / 16; ++s) {
      if (group == 0) {
        kc::wgmma_m64n64k16_ss(d, descriptor(a0_base + s * kA_Step, kA_LBO, kA_SBO),
                               descriptor(b0_base + s * kB_Step, kB_LBO, kB_SBO), s > 0);
      } else {
        uint32_t frag[4];
        a_fragment(frag, a1, K, s, tid);
        kc::wgmma_m64n64k16_rs_mn(d, frag, descriptor(b1_base + s * kBmn_Step, kBmn_LBO, kBmn_SBO),
                                  s > 0);
      }
    }
    kc::wgmma_commit_group();
    kc::wgmma_wait_all();
    scatter(d, tid, out.data() + group * 64 * 64);
  });
  check_product(out.data(), a0, b0, K);
  check_product(out.data() + 64 * 64, a1, b1, K);
}

TEST_CASE("emulated wgmma holds a kernel to the ISA's rules", "[simt]") {
  const uint64_t a_desc = descriptor(0, kA_LBO, kA_SBO), b_desc = descriptor(4096, kB_LBO, kB_SBO);
  constexpr size_t bytes = 8192;
  auto issue = [](uint64_t da, uint64_t db) {
    float d[32] = {};
    kc::wgmma_fence();
    kc::wgmma_m64n64k16_ss(d, da, db, false);
    kc::wgmma_commit_group();
    kc::wgmma_wait_all();
  };

  SECTION("a swizzled descriptor stops the launch") {
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] { issue(descriptor(0, 16, 1024, 1), b_desc); }),
                      Catch::Contains("supports only the no-swizzle layout"));
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] { issue(a_desc, b_desc | uint64_t(1) << 49); }),
                      Catch::Contains("supports only the no-swizzle layout"));
  }
  SECTION("a descriptor reaching outside dynamic shared memory stops the launch") {
    // The last 8-row group of B starts at 4096 + 7 * 1024.
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] { issue(a_desc, descriptor(4096, 128, 1024)); }),
                      Catch::Contains("outside dynamic shared memory"));
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] {
                                           float x[4];
                                           kc::shared_address(x);
                                         }),
                      Catch::Contains("outside dynamic shared memory"));
  }
  SECTION("a block that is not whole warpgroups cannot issue a wgmma") {
    CHECK_THROWS_WITH(
        dino::simt::launch(Dim3{1, 1, 1}, Dim3{96, 1, 1}, bytes, [&] { issue(a_desc, b_desc); }),
        Catch::Contains("not a multiple of 128"));
  }
  SECTION("a wgmma needs a wgmma_fence first, and again after a wait") {
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] {
                                           float d[32] = {};
                                           kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
                                         }),
                      Catch::Contains("without a wgmma_fence()"));
    CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                                         [&] {
                                           float d[32] = {};
                                           kc::wgmma_fence();
                                           kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
                                           kc::wgmma_commit_group();
                                           kc::wgmma_wait_all();
                                           kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, true);
                                         }),
                      Catch::Contains("without a wgmma_fence()"));
  }
  SECTION("the warps of a warpgroup must pass the same descriptors") {
    CHECK_THROWS_WITH(
        dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes,
                           [&] {
                             const bool last = dino::simt::thread_linear() >= 96;
                             issue(a_desc, last ? descriptor(4096 + 16, kB_LBO, kB_SBO) : b_desc);
                           }),
        Catch::Contains("same across all the warps of the warpgroup"));
  }
  SECTION("a wgmma that is not committed is not waited for: its accumulator stays NaN") {
    int nan_after_wait = 0;
    dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, [&] {
      unsigned char* smem = dino::simt::dynamic_shared_memory();
      if (dino::simt::thread_linear() == 0) std::memset(smem, 0, bytes);  // zero A and B
      dino::simt::sync_threads();
      float d[32] = {};
      kc::wgmma_fence();
      kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
      kc::wgmma_wait_all();  // no commit before it
      if (all_nan(d)) ++nan_after_wait;
      kc::wgmma_commit_group();
      kc::wgmma_wait_all();
      for (float v : d)
        if (v != 0.f) ++nan_after_wait;  // counts a wrong value after the committed wait too
    });
    CHECK(nan_after_wait == 128);
  }
  SECTION("an unwritten operand reads NaN into the product") {
    // Shared memory starts as NaN bytes: a wgmma issued before its tile is written gives NaN.
    int nan_results = 0;
    dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, [&] {
      float d[32] = {};
      kc::wgmma_fence();
      kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
      kc::wgmma_commit_group();
      kc::wgmma_wait_all();
      if (all_nan(d)) ++nan_results;
    });
    CHECK(nan_results == 128);
  }
}

TEST_CASE("emulated wgmma: its shared memory must not change until the wait", "[simt]") {
  const uint64_t a_desc = descriptor(0, kA_LBO, kA_SBO), b_desc = descriptor(4096, kB_LBO, kB_SBO);
  constexpr size_t bytes = 8192;
  auto body = [&](bool overwrite_before_wait) {
    return [=] {
      unsigned char* smem = dino::simt::dynamic_shared_memory();
      const int tid = dino::simt::thread_linear();
      if (tid == 0) std::memset(smem, 0, bytes);
      dino::simt::sync_threads();
      float d[32];
      kc::wgmma_fence();
      kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
      kc::wgmma_commit_group();
      if (overwrite_before_wait) {
        // Another thread refills B's tile (a pipeline stage reused too early).
        dino::simt::sync_threads();
        if (tid == 5) store_bf16(smem, 4096 + k_major(17, 3, kB_LBO, kB_SBO), 1.f);
        dino::simt::sync_threads();
      }
      kc::wgmma_wait_all();
      dino::simt::sync_threads();
      if (tid == 5) store_bf16(smem, 4096 + k_major(17, 3, kB_LBO, kB_SBO), 1.f);  // after: fine
    };
  };
  CHECK_NOTHROW(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, body(false)));
  CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, body(true)),
                    Catch::Contains("written between its issue and the wgmma_wait_all()"));
}

TEST_CASE("emulated wgmma: cp.async writes reach it only after a proxy fence", "[simt]") {
  const uint64_t a_desc = descriptor(0, kA_LBO, kA_SBO), b_desc = descriptor(4096, kB_LBO, kB_SBO);
  constexpr size_t bytes = 8192;
  static std::vector<unsigned char> source(bytes, 0);
  auto body = [&](bool fence) {
    return [=] {
      unsigned char* smem = dino::simt::dynamic_shared_memory();
      const int tid = dino::simt::thread_linear();
      for (int i = tid; i < int(bytes / 16); i += 128)
        kc::cp_async_16(smem + 16 * i, source.data() + 16 * i, true);
      kc::cp_async_wait_all();
      if (fence) kc::fence_proxy_async_shared();
      dino::simt::sync_threads();
      float d[32];
      kc::wgmma_fence();
      kc::wgmma_m64n64k16_ss(d, a_desc, b_desc, false);
      kc::wgmma_commit_group();
      kc::wgmma_wait_all();
    };
  };
  CHECK_NOTHROW(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, body(true)));
  CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{128, 1, 1}, bytes, body(false)),
                    Catch::Contains("have no fence_proxy_async_shared() after them"));
}
