// The runtime layer: copies are bit-exact, device bf16 conversion rounds exactly like the
// host's dino::bf16, and fill_f32 / poisoning write every element.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "tests/cuda/test_util.h"

namespace cu = dino::kernels::cuda;
using dino::test::DeviceBuffer;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Random floats over many binades plus the values rounding gets wrong most easily: zeros,
// infinities, denormals, ties between two bf16 values and the largest finite float.
std::vector<float> tricky_floats(dino::Rng& rng, size_t n) {
  std::vector<float> v = dino::test::random_floats(rng, n);
  for (size_t i = 0; i < n; i += 3) v[i] = float(v[i] * std::ldexp(1.0, int(rng.below(60)) - 30));
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(),
                            -1e-40f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            1.00390625f /* 1 + 2^-8: a tie, rounds to even (1) */,
                            1.01171875f /* 1 + 3*2^-8: a tie, rounds to even (1 + 2^-6) */};
  for (size_t i = 0; i < sizeof(specials) / sizeof(float) && i < n; ++i) v[i] = specials[i];
  return v;
}

}  // namespace

TEST_CASE("runtime: device description names the device", "[runtime]") {
  REQUIRE(cu::available());
  const std::string d = cu::device_description();
  INFO(d);
  CHECK(d.find("sm_") != std::string::npos);
  CHECK(d.find("SMs") != std::string::npos);
}

TEST_CASE("runtime: host -> device -> device -> host round trip is bit-exact", "[runtime]") {
  dino::Rng rng(11);
  for (size_t n : {size_t(1), size_t(37), size_t(1000003)}) {
    const std::vector<float> host = tricky_floats(rng, n);
    DeviceBuffer<float> a(host), b(n);
    b.poison();
    cu::copy_d2d(b.get(), a.get(), n * sizeof(float));
    const std::vector<float> back = b.download();
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) mismatches += bits_of(back[i]) != bits_of(host[i]);
    INFO("n = " << n);
    CHECK(mismatches == 0);
  }
}

// copy_h2d stages through pinned blocks and returns before the transfer: the host buffer is
// overwritten at once, several uploads of one size are in flight on the stream together (so
// a block still copying must not be handed out again), and each must land intact.
TEST_CASE("runtime: uploads in flight keep their data when the host buffer is reused",
          "[runtime]") {
  dino::Rng rng(13);
  const size_t n = (size_t(3) << 20) + 5;  // 12 MB: one staging block each, transfers of ~1 ms
  std::vector<std::vector<float>> sent;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dev;
  std::vector<float> host(n);
  for (int copy = 0; copy < 6; ++copy) {
    sent.push_back(dino::test::random_floats(rng, n));
    dev.push_back(std::make_unique<DeviceBuffer<float>>(n));
    host = sent.back();
    cu::copy_h2d(dev.back()->get(), host.data(), n * sizeof(float));
    std::fill(host.begin(), host.end(), std::numeric_limits<float>::quiet_NaN());
  }
  for (size_t c = 0; c < sent.size(); ++c) {
    const std::vector<float> back = dev[c]->download();
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) mismatches += bits_of(back[i]) != bits_of(sent[c][i]);
    INFO("upload " << c);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("runtime: bf16 conversions match the host's round-to-nearest-even", "[runtime]") {
  dino::Rng rng(12);
  for (size_t n : {size_t(1), size_t(197), size_t(1 << 20) + 3}) {
    const std::vector<float> host = tricky_floats(rng, n);
    DeviceBuffer<float> f(host), back(n);
    DeviceBuffer<dino::bf16> h(n);
    h.poison();
    back.poison();
    cu::convert_f32_to_bf16(h.get(), f.get(), int64_t(n));
    cu::convert_bf16_to_f32(back.get(), h.get(), int64_t(n));
    const std::vector<dino::bf16> got = h.download();
    const std::vector<float> got_back = back.download();
    size_t bad_bits = 0, bad_back = 0, first_bad = n;
    for (size_t i = 0; i < n; ++i) {
      const dino::bf16 expect(host[i]);
      if (got[i].bits != expect.bits) {
        ++bad_bits;
        if (first_bad == n) first_bad = i;
      }
      if (bits_of(got_back[i]) != bits_of(float(expect))) ++bad_back;
    }
    INFO("n = " << n << "; first mismatch at " << first_bad
                << (first_bad < n ? dino::str_cat(": input ", host[first_bad], ", device bits ",
                                                  got[first_bad].bits, ", host bits ",
                                                  dino::bf16(host[first_bad]).bits)
                                  : std::string()));
    CHECK(bad_bits == 0);
    CHECK(bad_back == 0);
  }
}

TEST_CASE("runtime: fill_f32 writes every element, poisoning makes NaN", "[runtime]") {
  for (int64_t n : {int64_t(1), int64_t(33), int64_t(5000011)}) {
    DeviceBuffer<float> buf{size_t(n)};
    buf.poison();
    std::vector<float> host = buf.download();
    size_t nan_count = 0;
    for (float x : host) nan_count += std::isnan(x);
    CHECK(nan_count == size_t(n));

    cu::fill_f32(buf.get(), 2.5f, n);
    host = buf.download();
    size_t wrong = 0;
    for (float x : host) wrong += x != 2.5f;
    INFO("n = " << n);
    CHECK(wrong == 0);

    cu::fill_f32(buf.get(), std::numeric_limits<float>::quiet_NaN(), n);
    host = buf.download();
    nan_count = 0;
    for (float x : host) nan_count += std::isnan(x);
    CHECK(nan_count == size_t(n));
  }
}

TEST_CASE("runtime: alloc(0) and free(nullptr) are no-ops", "[runtime]") {
  CHECK(cu::alloc(0) == nullptr);
  cu::free(nullptr);
  cu::synchronize();
}
