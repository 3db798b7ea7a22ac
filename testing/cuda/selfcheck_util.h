#pragma once
// What `dino check`'s optimizer comparisons (testing/cuda/selfcheck*.cpp) share: NaN-poisoned
// device arrays, fresh random inputs and the table they add their rows to (a thrown CUDA error
// becomes a failing row).
// CUDA-side only (it needs cuda_runtime.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"

namespace dino::kernels::cuda::selfcheck {

inline cudaStream_t cstream() { return static_cast<cudaStream_t>(stream()); }

// A device array poisoned with NaN (all bytes 0xFF) unless given contents; freed on scope exit.
template <class T>
class Buf {
 public:
  explicit Buf(size_t n) : n_(n), p_(static_cast<T*>(alloc(n * sizeof(T)))) {
    if (n_)
      DINO_CHECK(cudaMemsetAsync(p_, 0xFF, n_ * sizeof(T), cstream()) == cudaSuccess,
                 "[check] poisoning failed");
  }
  explicit Buf(const std::vector<T>& host)
      : n_(host.size()), p_(static_cast<T*>(alloc(n_ * sizeof(T)))) {
    copy_h2d(p_, host.data(), n_ * sizeof(T));
  }
  ~Buf() { free(p_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  T* get() const { return p_; }
  __nv_bfloat16* bf() const { return reinterpret_cast<__nv_bfloat16*>(p_); }
  std::vector<double> download() const {
    std::vector<T> host(n_);
    copy_d2h(host.data(), p_, n_ * sizeof(T));
    std::vector<double> out(n_);
    for (size_t i = 0; i < n_; ++i) out[i] = double(float(host[i]));
    return out;
  }

 private:
  size_t n_;
  T* p_;
};

inline std::vector<float> randn(Rng& rng, size_t n, double scale = 1.0, double shift = 0.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(shift + scale * rng.normal());
  return v;
}
struct Table {
  std::vector<Row>& rows;
  void add(const std::string& kernel, const std::string& shape, const std::string& output,
           const std::vector<double>& got, const std::vector<double>& ref, double tol) {
    const Comparison c = compare(got, ref);
    const bool pass = c.non_finite == 0 && c.rel_l2 <= tol;
    rows.push_back({kernel, shape, output, c.rel_l2, tol, c.non_finite, pass, pass ? "" : c.worst});
  }
  // Runs one case; a thrown error (a failed CUDA call) becomes a failing row.
  void run(const std::string& kernel, const std::string& shape, const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      rows.push_back({kernel, shape, "(error)", NAN, 0, 0, false, e.what()});
    }
  }
};

}  // namespace dino::kernels::cuda::selfcheck
