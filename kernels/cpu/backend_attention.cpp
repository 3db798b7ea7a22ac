// The CPU backend's attention (core/ops_nn.cpp) on kernels/cpu/attention.cpp: every tensor in
// the op's one dtype; the probabilities on request.
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

void CpuBackend::attention(const Tensor& out, const Tensor& lse, const Tensor& probs,
                           const Tensor& qkv, int64_t heads) const {
  const int64_t B = qkv.size(0), N = qkv.size(1), Dh = qkv.size(2) / (3 * heads);
  dispatch_float("attention", qkv.dtype(), [&](auto tag) {
    using T = decltype(tag);
    attention_forward<T>(out.data<T>(), lse.data<T>(), probs.defined() ? probs.data<T>() : nullptr,
                         qkv.data<T>(), B, N, heads, Dh);
  });
}

void CpuBackend::attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                                    const Tensor& out, const Tensor& lse, int64_t heads) const {
  const int64_t B = qkv.size(0), N = qkv.size(1), Dh = qkv.size(2) / (3 * heads);
  dispatch_float("attention", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(dqkv.data<T>(), dout.data<T>(), qkv.data<T>(), out.data<T>(),
                               lse.data<T>(), B, N, heads, Dh);
  });
}

}  // namespace dino::kernels::cpu
