// The CUDA backend's attention (core/ops_nn.cpp) on kernels/cuda/attention.cu ("ours": the
// kernels attention_kernel_for picks; "ours-mma": always the portable mma.sync ones),
// or on registered kernels of the same layout and lse selected by name (model.attention=cudnn:
// cuDNN's SDPA, benchmarks/cudnn/): bf16 qkv, out and
// gradients, f32 lse; head dims 32, 64, 128. The fused kernel never forms the N x N matrix, so
// it has no probabilities to give.
#include <cstdint>
#include <string>
#include <vector>

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

const AttentionKernels kOurs{"ours", [] { return std::string(); }, attention_forward,
                             attention_backward};
// The portable mma.sync kernels even where "ours" runs Hopper's wgmma ones: the step's A/B.
const AttentionKernels kOursMma{
    "ours-mma", [] { return std::string(); },
    [](__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H, int Dh,
       cudaStream_t stream) {
      attention_forward_with(AttentionKernel::mma, out, lse, qkv, B, N, H, Dh, stream);
    },
    [](__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
       const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
       cudaStream_t stream) {
      attention_backward_with(AttentionKernel::mma, dqkv, dout, qkv, out, lse, B, N, H, Dh, stream);
    }};

std::vector<AttentionKernels>& registered() {
  static std::vector<AttentionKernels> kernels{kOurs, kOursMma};
  return kernels;
}

AttentionKernels g_selected = kOurs;

}  // namespace

void register_attention_kernels(const AttentionKernels& kernels) {
  for (AttentionKernels& k : registered())
    if (std::string(k.name) == kernels.name) {
      k = kernels;
      return;
    }
  registered().push_back(kernels);
}

void set_attention_backend(const char* name) {
  const std::string n = name ? name : "";
  std::string known;
  for (const AttentionKernels& k : registered()) {
    if (n == k.name) {
      const std::string why = k.unavailable();
      DINO_CHECK(why.empty(), "[attention] attention=", n, " cannot run here: ", why);
      g_selected = k;
      return;
    }
    known += str_cat(known.empty() ? "" : ", ", k.name);
  }
  throw Error(str_cat("[attention] unknown attention backend '", n, "' (this program has: ", known,
                      n == "cudnn" ? "; cuDNN's comes with the dino CLI" : "", ")"));
}

const char* attention_backend_name() { return g_selected.name; }

void CudaBackend::select_attention(const std::string& name) const {
  set_attention_backend(name.c_str());
}

void CudaBackend::attention(const Tensor& out, const Tensor& lse, const Tensor& probs,
                            const Tensor& qkv, int64_t heads) const {
  DINO_CHECK(!probs.defined(),
             "[attention] the attention probabilities (probs) are not "
             "available on CUDA: the fused kernel never forms the N x N matrix; run with "
             "--device cpu");
  const AttentionSizes s = attention_sizes(qkv, heads);
  const Tensor q = aligned16(qkv);
  g_selected.forward(bf16_ptr(out), f32_ptr(lse), bf16_ptr(q), s.B, s.N, s.H, s.Dh, op_stream());
}

void CudaBackend::attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                                     const Tensor& out, const Tensor& lse, int64_t heads) const {
  const AttentionSizes s = attention_sizes(qkv, heads);
  const Tensor q = aligned16(qkv), g = aligned16(dout);
  g_selected.backward(bf16_ptr(dqkv), bf16_ptr(g), bf16_ptr(q), bf16_ptr(out), f32_ptr(lse), s.B,
                      s.N, s.H, s.Dh, op_stream());
}

}  // namespace dino::kernels::cuda
