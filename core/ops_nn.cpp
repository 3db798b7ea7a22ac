// Fused neural-network ops, each ONE autograd node with a fused backward: softmax,
// log_softmax, l2_normalize, attention; plus drop_path and the bicubic grid resize
// (LayerNorm: ops_layer_norm.cpp). Attention runs on the tensors' backend (core/backend.h);
// the others, on a CUDA tensor, run their kernels/cuda launcher in a *_cuda helper below.
// Precision (ARCHITECTURE §3): softmax, log_softmax, l2_normalize and drop_path keep their
// input's dtype (f32 or bf16) with f32 math; attention runs on bf16 qkv; resize_bicubic is
// f32. A gradient has its input's dtype; an upstream gradient of another float type is cast
// first.
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

#ifdef DINO_HAS_CUDA
namespace {

namespace kg = kernels::cuda;

Tensor softmax_like_cuda(const char* op, const Tensor& x, bool log_space, int64_t N, int64_t C64) {
  check_float(op, x, "x");
  const int C = as_int(op, C64, "columns");
  const bool bf = x.dtype() == DType::bf16;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  Tensor lse = Tensor::empty({N}, DType::f32, Device::cuda);
  if (bf) {
    if (log_space)
      kg::log_softmax_forward(bf16_ptr(out), f32_ptr(lse), bf16_ptr(x), N, C, cuda_stream());
    else
      kg::softmax_forward(bf16_ptr(out), f32_ptr(lse), bf16_ptr(x), N, C, cuda_stream());
  } else {
    if (log_space)
      kg::log_softmax_forward(f32_ptr(out), f32_ptr(lse), f32_ptr(x), N, C, cuda_stream());
    else
      kg::softmax_forward(f32_ptr(out), f32_ptr(lse), f32_ptr(x), N, C, cuda_stream());
  }
  if (needs_grad({x})) {
    // The backward recomputes the probabilities from x and the fp32 lse (kernels/cuda/softmax.cu).
    Tensor xd = x.detach();
    record(out, op, {x}, [=](const Tensor& g) {
      const Tensor gd = in_dtype(g, xd.dtype());
      Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), Device::cuda);
      if (bf) {
        if (log_space)
          kg::log_softmax_backward(bf16_ptr(dx), bf16_ptr(gd), bf16_ptr(xd), f32_ptr(lse), N, C,
                                   cuda_stream());
        else
          kg::softmax_backward(bf16_ptr(dx), bf16_ptr(gd), bf16_ptr(xd), f32_ptr(lse), N, C,
                               cuda_stream());
      } else {
        if (log_space)
          kg::log_softmax_backward(f32_ptr(dx), f32_ptr(gd), f32_ptr(xd), f32_ptr(lse), N, C,
                                   cuda_stream());
        else
          kg::softmax_backward(f32_ptr(dx), f32_ptr(gd), f32_ptr(xd), f32_ptr(lse), N, C,
                               cuda_stream());
      }
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

Tensor l2_normalize_cuda(const Tensor& x, double eps, int64_t N, int64_t C64) {
  check_float("l2_normalize", x, "x");
  const int C = as_int("l2_normalize", C64, "columns");
  const bool bf = x.dtype() == DType::bf16;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  Tensor norm = Tensor::empty({N}, DType::f32, Device::cuda);
  if (bf)
    kg::l2_normalize_forward(bf16_ptr(out), f32_ptr(norm), bf16_ptr(x), N, C, eps, cuda_stream());
  else
    kg::l2_normalize_forward(f32_ptr(out), f32_ptr(norm), f32_ptr(x), N, C, eps, cuda_stream());
  if (needs_grad({x})) {
    Tensor xd = x.detach();
    record(out, "l2_normalize", {x}, [=](const Tensor& g) {
      const Tensor gd = in_dtype(g, xd.dtype());
      Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), Device::cuda);
      if (bf)
        kg::l2_normalize_backward(bf16_ptr(dx), bf16_ptr(gd), bf16_ptr(xd), f32_ptr(norm), N, C,
                                  eps, cuda_stream());
      else
        kg::l2_normalize_backward(f32_ptr(dx), f32_ptr(gd), f32_ptr(xd), f32_ptr(norm), N, C, eps,
                                  cuda_stream());
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

// keep (B): the per-sample draws, made by the caller exactly as the CPU path makes them.
Tensor drop_path_cuda(const Tensor& x, double p, const std::vector<uint8_t>& keep) {
  check_float("drop_path", x, "x");
  const int64_t B = x.size(0), S = B ? x.numel() / B : 0;
  const float scale = float(1 / (1 - p));  // the CPU path's T(1 / (1 - p)) for T = float
  const bool bf = x.dtype() == DType::bf16;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  if (bf)
    kg::drop_path_apply(bf16_ptr(out), bf16_ptr(x), keep.data(), scale, B, S, cuda_stream());
  else
    kg::drop_path_apply(f32_ptr(out), f32_ptr(x), keep.data(), scale, B, S, cuda_stream());
  if (needs_grad({x})) {
    const Shape shape = x.shape();
    const DType dt = x.dtype();
    record(out, "drop_path", {x}, [=](const Tensor& g) {
      const Tensor gd = in_dtype(g, dt);
      Tensor dx = Tensor::empty(shape, dt, Device::cuda);
      if (bf)
        kg::drop_path_apply(bf16_ptr(dx), bf16_ptr(gd), keep.data(), scale, B, S, cuda_stream());
      else
        kg::drop_path_apply(f32_ptr(dx), f32_ptr(gd), keep.data(), scale, B, S, cuda_stream());
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

Tensor resize_bicubic_cuda(const Tensor& grid, int64_t Ho64, int64_t Wo64, double scale_h,
                           double scale_w) {
  DINO_CHECK(grid.dtype() == DType::f32, "[resize_bicubic] grid must be f32 on CUDA, got ",
             dtype_name(grid.dtype()));
  const int Hi = as_int("resize_bicubic", grid.size(0), "rows"),
            Wi = as_int("resize_bicubic", grid.size(1), "columns"),
            C = as_int("resize_bicubic", grid.size(2), "channels"),
            Ho = as_int("resize_bicubic", Ho64, "output rows"),
            Wo = as_int("resize_bicubic", Wo64, "output columns");
  Tensor out = Tensor::empty({Ho64, Wo64, int64_t(C)}, DType::f32, Device::cuda);
  kg::bicubic_resize_forward(f32_ptr(out), f32_ptr(grid), Hi, Wi, Ho, Wo, C, scale_h, scale_w,
                             cuda_stream());
  if (needs_grad({grid})) {
    record(out, "resize_bicubic", {grid}, [=](const Tensor& g) {
      const Tensor gd = in_dtype(g, DType::f32);
      Tensor din = Tensor::empty({int64_t(Hi), int64_t(Wi), int64_t(C)}, DType::f32, Device::cuda);
      kg::bicubic_resize_backward(f32_ptr(din), f32_ptr(gd), Hi, Wi, Ho, Wo, C, scale_h, scale_w,
                                  cuda_stream());
      return std::vector<Tensor>{din};
    });
  }
  return out;
}

}  // namespace
#endif  // DINO_HAS_CUDA

namespace {

Tensor softmax_like(const char* op, const Tensor& x, bool log_space) {
  check_defined(op, x, "x");
  DINO_CHECK(x.dim() >= 1, "[", op, "] x needs at least one dim");
  const int64_t N = rows_of(x), C = cols_of(x);
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return softmax_like_cuda(op, x, log_space, N, C);
#endif
  }
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (log_space)
      kc::log_softmax_forward<T>(out.data<T>(), x.data<T>(), N, C);
    else
      kc::softmax_forward<T>(out.data<T>(), x.data<T>(), N, C);
  });
  if (needs_grad({x})) {
    Tensor yd = out.detach();
    record(out, op, {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
      dispatch_float(op, g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if (log_space)
          kc::log_softmax_backward<T>(dx.data<T>(), g.data<T>(), yd.data<T>(), N, C);
        else
          kc::softmax_backward<T>(dx.data<T>(), g.data<T>(), yd.data<T>(), N, C);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_like("softmax", x, false); }
Tensor log_softmax(const Tensor& x) { return softmax_like("log_softmax", x, true); }

Tensor l2_normalize(const Tensor& x, double eps) {
  check_defined("l2_normalize", x, "x");
  DINO_CHECK(x.dim() >= 1, "[l2_normalize] x needs at least one dim");
  const int64_t N = rows_of(x), C = cols_of(x);
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return l2_normalize_cuda(x, eps, N, C);
#endif
  }
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor norm = Tensor::empty({N}, x.dtype(), x.device());
  dispatch_float("l2_normalize", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::l2_normalize_forward<T>(out.data<T>(), norm.data<T>(), x.data<T>(), N, C, eps);
  });
  if (needs_grad({x})) {
    Tensor xd = x.detach();
    record(out, "l2_normalize", {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
      dispatch_float("l2_normalize", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::l2_normalize_backward<T>(dx.data<T>(), g.data<T>(), xd.data<T>(), norm.data<T>(), N,
                                     C, eps);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

// qkv (B, N, 3*H*Dh) -> out (B, N, H*Dh); probs (B, H, N, N) on request, where the backend
// forms them (the CPU's). On CUDA qkv, out and dqkv are bf16 (the GEMMs' operands around it),
// lse f32; the backward recomputes the probabilities from qkv and lse.
Tensor attention(const Tensor& qkv, int64_t heads, Tensor* probs) {
  check_defined("attention", qkv, "qkv");
  precision::check_float_operands("attention", {{&qkv, "qkv"}});
  DINO_CHECK(qkv.dim() == 3, "[attention] qkv must be (B, N, 3*D), got ", shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), N = qkv.size(1), D3 = qkv.size(2);
  DINO_CHECK(heads > 0 && D3 % (3 * heads) == 0, "[attention] last dim ", D3,
             " is not 3 * heads * head_dim for ", heads, " heads");
  const Backend& be = backend(qkv.device(), "attention");
  const DType dt = precision::gemm_operand(qkv);
  const Tensor q = qkv.dtype() == dt ? qkv.detach() : qkv.to(dt);
  Tensor out = Tensor::empty({B, N, D3 / 3}, dt, qkv.device());
  Tensor lse = Tensor::empty({B, heads, N}, precision::gemm_accumulator(qkv), qkv.device());
  Tensor p = probs ? Tensor::empty({B, heads, N, N}, dt, qkv.device()) : Tensor();
  be.attention(out, lse, p, q, heads);
  if (probs) *probs = p;
  if (needs_grad({qkv})) {
    const Tensor od = out.detach();
    const DType qkv_dtype = qkv.dtype();
    record(out, "attention", {qkv}, [=](const Tensor& g) {
      Tensor dq = Tensor::empty(q.shape(), dt, q.device());
      backend(q.device()).attention_backward(dq, g.to(dt), q, od, lse, heads);
      return std::vector<Tensor>{dq.to(qkv_dtype)};
    });
  }
  return out;
}

Tensor drop_path(const Tensor& x, double p, bool training, Rng& rng) {
  check_defined("drop_path", x, "x");
  DINO_CHECK(p >= 0 && p < 1, "[drop_path] probability must be in [0, 1), got ", p);
  if (p == 0 || !training) return x;
  DINO_CHECK(x.dim() >= 1, "[drop_path] x needs a batch dim");
  const int64_t B = x.size(0);
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    // The same draws as below, in the same order; the kernel applies them.
    std::vector<uint8_t> keep(size_t(B), 0);
    for (int64_t b = 0; b < B; ++b) keep[size_t(b)] = rng.bernoulli(1 - p) ? 1 : 0;
    return drop_path_cuda(x, p, keep);
#endif
  }
  // One draw per sample, in sample order, so the masks depend only on the generator state.
  Tensor mask = Tensor::empty({B}, x.dtype());
  dispatch_float("drop_path", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t b = 0; b < B; ++b) mask.data<T>()[b] = rng.bernoulli(1 - p) ? T(1 / (1 - p)) : T(0);
  });
  Shape ms(size_t(x.dim()), 1);
  ms[0] = B;
  return mul(x, mask.to(x.device()).reshape(ms));
}

Tensor resize_bicubic(const Tensor& grid, int64_t Ho, int64_t Wo, double scale_h, double scale_w) {
  check_defined("resize_bicubic", grid, "grid");
  DINO_CHECK(grid.dim() == 3, "[resize_bicubic] grid must be (H, W, C), got ",
             shape_str(grid.shape()));
  DINO_CHECK(Ho > 0 && Wo > 0 && scale_h > 0 && scale_w > 0,
             "[resize_bicubic] output size and scales must be positive");
  if (on_cuda(grid)) {
#ifdef DINO_HAS_CUDA
    return resize_bicubic_cuda(grid, Ho, Wo, scale_h, scale_w);
#endif
  }
  const int64_t Hi = grid.size(0), Wi = grid.size(1), C = grid.size(2);
  Tensor out = Tensor::empty({Ho, Wo, C}, grid.dtype(), grid.device());
  dispatch_float("resize_bicubic", grid.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::bicubic_resize_forward<T>(out.data<T>(), grid.data<T>(), Hi, Wi, Ho, Wo, C, scale_h,
                                  scale_w);
  });
  if (needs_grad({grid})) {
    record(out, "resize_bicubic", {grid}, [=](const Tensor& g) {
      Tensor din = Tensor::empty({Hi, Wi, C}, g.dtype(), g.device());
      dispatch_float("resize_bicubic", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::bicubic_resize_backward<T>(din.data<T>(), g.data<T>(), Hi, Wi, Ho, Wo, C, scale_h,
                                       scale_w);
      });
      return std::vector<Tensor>{din};
    });
  }
  return out;
}

}  // namespace dino
