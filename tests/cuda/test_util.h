#pragma once
// Helpers shared by the CUDA-vs-CPU tests (ARCHITECTURE §6): device buffers poisoned with NaN
// before every run, fresh random inputs, bf16 rounding as the host does it, and the
// ||got - ref|| / ||ref|| metric against a float64 reference, which prints the worst element
// when a check fails.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"

namespace dino::test {

namespace cu = ::dino::kernels::cuda;

inline cudaStream_t test_stream() { return static_cast<cudaStream_t>(cu::stream()); }

// A device array of n elements of T (float, bf16 bits, int...), freed on scope exit.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n), p_(static_cast<T*>(cu::alloc(n * sizeof(T)))) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cu::free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    DINO_CHECK(host.size() == n_, "[test] upload of ", host.size(), " elements into ", n_);
    cu::copy_h2d(p_, host.data(), n_ * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cu::copy_d2h(host.data(), p_, n_ * sizeof(T));
    return host;
  }
  // All bytes 0xFF: NaN as float (0xFFFFFFFF) and as bf16 (0xFFFF), so any element a kernel
  // forgets to write shows up as NaN.
  void poison() {
    if (n_) REQUIRE(cudaMemsetAsync(p_, 0xFF, n_ * sizeof(T), test_stream()) == cudaSuccess);
  }

 private:
  size_t n_;
  T* p_;
};

// n standard-normal values times scale plus shift (fresh for every test: never zeros).
inline std::vector<float> random_floats(Rng& rng, size_t n, double scale = 1.0,
                                        double shift = 0.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(shift + scale * rng.normal());
  return v;
}

inline float round_bf16(float x) { return float(bf16(x)); }

inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16(v[i]);
  return out;
}

inline std::vector<double> host_doubles(const Tensor& t) {
  const std::vector<float> f = t.to_vector();
  return std::vector<double>(f.begin(), f.end());
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}
inline std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double(float(v[i]));
  return out;
}
// The bf16-rounded values of v, in double: the inputs a bf16 kernel actually sees.
inline std::vector<double> bf16_rounded(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double(round_bf16(v[i]));
  return out;
}
inline std::vector<double> bf16_rounded(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double(round_bf16(float(v[i])));
  return out;
}

// The metric and the bf16 floor are shared with `dino check` (testing/cuda/selfcheck.h).
using ::dino::kernels::cuda::selfcheck::bf16_output_error;
using ::dino::kernels::cuda::selfcheck::compare;
using ::dino::kernels::cuda::selfcheck::Comparison;

// Checks ||got - ref|| / ||ref|| <= tol and that every element was written (finite).
inline void expect_close(const std::string& what, const std::vector<double>& got,
                         const std::vector<double>& ref, double tol) {
  const Comparison c = compare(got, ref);
  INFO(what << ": rel L2 error " << c.rel_l2 << " (tolerance " << tol << "), " << c.non_finite
            << " non-finite elements; worst " << c.worst);
  CHECK(c.non_finite == 0);
  CHECK(c.rel_l2 <= tol);
}

}  // namespace dino::test
