// The CUDA backend's attention (core/ops_nn.cpp) on kernels/cuda/attention.cu, or cuDNN's SDPA
// when model.attention=cudnn (the in-binary baseline, same layout and lse): bf16 qkv, out and
// gradients, f32 lse; head dims 32, 64, 128. The fused kernel never forms the N x N matrix, so
// it has no probabilities to give.
#include <cstdint>

#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

namespace {

// The kernels read with 16-byte loads: a misaligned view is copied first.
Tensor aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0 ? t : t.clone();
}

struct AttentionSizes {
  int B, N, H, Dh;
};

AttentionSizes attention_sizes(const Tensor& qkv, int64_t heads) {
  const int64_t Dh = qkv.size(2) / (3 * heads);
  DINO_CHECK(Dh == 32 || Dh == 64 || Dh == 128, "[attention] head dim ", Dh,
             " is not supported on CUDA (32, 64 or 128); run with --device cpu");
  return {as_int("attention", qkv.size(0), "batch"), as_int("attention", qkv.size(1), "tokens"),
          as_int("attention", heads, "heads"), int(Dh)};
}

bool use_cudnn() { return attention_backend() == AttentionBackend::cudnn; }

}  // namespace

void CudaBackend::attention(const Tensor& out, const Tensor& lse, const Tensor& probs,
                            const Tensor& qkv, int64_t heads) const {
  DINO_CHECK(!probs.defined(), "[attention] the attention probabilities (probs) are not "
             "available on CUDA: the fused kernel never forms the N x N matrix; run with "
             "--device cpu");
  const AttentionSizes s = attention_sizes(qkv, heads);
  const Tensor q = aligned16(qkv);
  (use_cudnn() ? cudnn_attention_forward : attention_forward)(
      bf16_ptr(out), f32_ptr(lse), bf16_ptr(q), s.B, s.N, s.H, s.Dh, op_stream());
}

void CudaBackend::attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                                     const Tensor& out, const Tensor& lse, int64_t heads) const {
  const AttentionSizes s = attention_sizes(qkv, heads);
  const Tensor q = aligned16(qkv), g = aligned16(dout);
  (use_cudnn() ? cudnn_attention_backward : cuda::attention_backward)(
      bf16_ptr(dqkv), bf16_ptr(g), bf16_ptr(q), bf16_ptr(out), f32_ptr(lse), s.B, s.N, s.H, s.Dh,
      op_stream());
}

}  // namespace dino::kernels::cuda
