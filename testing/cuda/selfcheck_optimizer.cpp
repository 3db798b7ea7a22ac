// `dino check` rows for the optimizer family's clipping launch (scale_by_norms, after
// grad_norms): per-parameter clipping (DINO's utils.clip_gradients) and global-norm clipping
// (clip_grad_norm_) against float64 references on tensors of which some exceed the maximum
// norm and some do not. adamw_step, ema_update and grad_norms have their rows in selfcheck.cpp.
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"
#include "testing/optimizer_cases.h"

namespace dino::kernels::cuda::selfcheck {

namespace {

// A device array freed on scope exit.
template <class T>
struct DeviceArray {
  explicit DeviceArray(const std::vector<T>& host)
      : n(host.size()), p(static_cast<T*>(alloc(n * sizeof(T)))) {
    copy_h2d(p, host.data(), n * sizeof(T));
  }
  ~DeviceArray() { free(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  std::vector<T> download() const {
    std::vector<T> host(n);
    copy_d2h(host.data(), p, n * sizeof(T));
    return host;
  }
  size_t n;
  T* p;
};

}  // namespace

void check_optimizer_clip(std::vector<Row>& rows, uint64_t seed) {
  Rng rng(seed);
  const double max_norm = 3.0;
  for (const bool aligned : {false, true}) {
    // The optimizer tests' tensor set (testing/optimizer_cases.h).
    const testing::TensorLayout l = testing::optimizer_layout(rng, aligned);
    const std::vector<int64_t>&sizes = l.sizes, &off = l.offsets;
    const int64_t total = l.total;
    const std::string shape = str_cat(sizes.size(), " tensors, ", total, " elements, ",
                                      aligned ? "aligned" : "packed", ", max norm 3");
    for (const bool global : {false, true}) {
      const std::string kernel = global ? "scale_by_norms (global)" : "scale_by_norms (per tensor)";
      try {
        // Norms of about 0.03, 1 and 30 (by tensor, in turn) around the maximum of 3.
        std::vector<float> g(static_cast<size_t>(total));
        for (size_t k = 0; k < sizes.size(); ++k) {
          const double scale =
              std::pow(10.0, -1.5 + 1.5 * double(k % 3)) / std::sqrt(double(sizes[k]));
          for (int64_t i = 0; i < sizes[k]; ++i)
            g[size_t(off[k] + i)] = float(scale * rng.normal());
        }
        std::vector<TensorSpan> spans;
        DeviceArray<float> dg(g), norms(std::vector<float>(sizes.size(), NAN));
        for (size_t k = 0; k < sizes.size(); ++k) spans.push_back({dg.p + off[k], sizes[k]});
        DeviceArray<TensorSpan> dspans(spans);
        cudaStream_t s = static_cast<cudaStream_t>(stream());
        grad_norms(norms.p, dspans.p, int(spans.size()), s);
        scale_by_norms(dspans.p, norms.p, int(spans.size()), max_norm, global, s);

        std::vector<double> norm(sizes.size(), 0.0), ref(g.size());
        double total_sq = 0;
        for (size_t k = 0; k < sizes.size(); ++k) {
          for (int64_t i = 0; i < sizes[k]; ++i)
            norm[k] += double(g[size_t(off[k] + i)]) * g[size_t(off[k] + i)];
          total_sq += norm[k];
          norm[k] = std::sqrt(norm[k]);
        }
        for (size_t k = 0; k < sizes.size(); ++k) {
          const double coef = max_norm / ((global ? std::sqrt(total_sq) : norm[k]) + 1e-6);
          for (int64_t i = 0; i < sizes[k]; ++i) {
            const size_t j = size_t(off[k] + i);
            ref[j] = coef < 1 ? double(g[j]) * coef : double(g[j]);
          }
        }
        const std::vector<float> got_f = dg.download();
        const std::vector<double> got(got_f.begin(), got_f.end());
        const Comparison c = compare(got, ref);
        const double tol = 1e-6;  // float norms (a few ulps) and the float store
        const bool pass = c.non_finite == 0 && c.rel_l2 <= tol;
        rows.push_back(
            {kernel, shape, "grads", c.rel_l2, tol, c.non_finite, pass, pass ? "" : c.worst});
      } catch (const std::exception& e) {
        rows.push_back({kernel, shape, "(error)", NAN, 0, 0, false, e.what()});
      }
    }
  }
}

}  // namespace dino::kernels::cuda::selfcheck
