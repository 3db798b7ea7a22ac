// GEMM-backed ops: matmul, linear, the weight-normalised linear of DINO's head, and the
// patch embedding (im2col + GEMM).
//
// On CUDA (ARCHITECTURE §3) every product is a cuBLASLt GEMM with bf16
// operands and fp32 accumulation (kernels/cuda/gemm.cu). Parameters are f32 master weights
// and are read through their cached bf16 copy (Tensor::bf16_copy on the parameter's own
// handle); f32 activations are cast to bf16 first. linear and matmul write bf16;
// weight_norm_linear writes f32 logits and patchify the f32 residual stream (fp32-output
// GEMMs). Backward: input gradients in the input's dtype, weight gradients f32 from an
// fp32-output GEMM, the bias gradient from gemm's bias_grad (a column sum of dy). An upstream
// gradient that arrives in f32 is cast to bf16 for the GEMMs.
#include <algorithm>
#include <utility>
#include <vector>

#include "core/ops_util.h"
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

namespace {

#ifdef DINO_HAS_CUDA
namespace kg = kernels::cuda;

// A GEMM operand: the tensor itself when bf16, else a fresh bf16 cast (activations; a
// parameter goes through its cached Tensor::bf16_copy instead).
Tensor as_bf16(const Tensor& t) { return t.dtype() == DType::bf16 ? t : t.to(DType::bf16); }
void* opt_ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
#endif

// The CUDA forms take f32 or bf16 tensors (mixed) that all live on the GPU.
void check_cuda_operands(const char* op,
                         std::initializer_list<std::pair<const Tensor*, const char*>> ts) {
  for (const auto& [t, name] : ts) {
    if (!t->defined()) continue;
    DINO_CHECK(t->device() == Device::cuda, "[", op, "] mixes cuda and cpu tensors: ", name,
               " is on the cpu");
    DINO_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::bf16, "[", op, "] ", name,
               " must be f32 or bf16 on CUDA, got ", dtype_name(t->dtype()));
  }
}

// The gradient of a broadcast bias: column sums of g viewed as (R, C), in double.
Tensor bias_grad(const Tensor& g, int64_t R, int64_t C) {
  Tensor out = Tensor::empty({C}, g.dtype(), g.device());
  dispatch_float("bias_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::column_sums<double>(out.data<T>(), g.data<T>(), R, C, true);
  });
  return out;
}

#ifdef DINO_HAS_CUDA
// ---- the CUDA forms (validated by the public ops; all tensors on the GPU) ----------------

// a (..., M, K) @ b (..., K, N) or b (K, N) -> bf16 (..., M, N). A shared b folds the batch
// into the rows (one GEMM); a batched b is one strided-batched GEMM.
Tensor matmul_cuda(const Tensor& a, const Tensor& b, const Shape& so, int64_t nb, int64_t M,
                   int64_t K, int64_t N, bool shared_b) {
  DINO_CHECK(nb > 0 && M > 0 && K > 0 && N > 0, "[matmul] empty operands ", shape_str(a.shape()),
             " @ ", shape_str(b.shape()), " are not supported on CUDA");
  const Tensor ab = as_bf16(a), bb = as_bf16(b);
  Tensor out = Tensor::empty(so, DType::bf16, Device::cuda);
  if (shared_b)
    kg::gemm(out.raw_data(), true, bf16_ptr(ab), bf16_ptr(bb), nullptr, kg::GemmEpilogue::none,
             nb * M, N, K, false, false, 1, 0, 0, 0, cuda_stream());
  else
    kg::gemm(out.raw_data(), true, bf16_ptr(ab), bf16_ptr(bb), nullptr, kg::GemmEpilogue::none, M,
             N, K, false, false, int(nb), M * K, K * N, M * N, cuda_stream());
  if (needs_grad({a, b})) {
    const Tensor ad = ab.detach(), bd = bb.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    const DType adt = a.dtype(), bdt = b.dtype();
    const Shape ashape = a.shape(), bshape = b.shape();
    record(out, "matmul", {a, b}, [=](const Tensor& g_in) {
      const Tensor g = as_bf16(g_in);
      Tensor da, db;
      if (ga) {  // da = g @ b^T, in a's dtype
        da = Tensor::empty(ashape, adt, Device::cuda);
        if (shared_b)
          kg::gemm(da.raw_data(), adt == DType::bf16, bf16_ptr(g), bf16_ptr(bd), nullptr,
                   kg::GemmEpilogue::none, nb * M, K, N, false, true, 1, 0, 0, 0, cuda_stream());
        else
          kg::gemm(da.raw_data(), adt == DType::bf16, bf16_ptr(g), bf16_ptr(bd), nullptr,
                   kg::GemmEpilogue::none, M, K, N, false, true, int(nb), M * N, K * N, M * K,
                   cuda_stream());
      }
      if (gb) {  // db = a^T @ g, in b's dtype; a shared b sums over every row of the batch
        db = Tensor::empty(bshape, bdt, Device::cuda);
        if (shared_b)
          kg::gemm(db.raw_data(), bdt == DType::bf16, bf16_ptr(ad), bf16_ptr(g), nullptr,
                   kg::GemmEpilogue::none, K, N, nb * M, true, false, 1, 0, 0, 0, cuda_stream());
        else
          kg::gemm(db.raw_data(), bdt == DType::bf16, bf16_ptr(ad), bf16_ptr(g), nullptr,
                   kg::GemmEpilogue::none, K, N, M, true, false, int(nb), M * K, M * N, K * N,
                   cuda_stream());
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

// x (R rows, I) @ weight (O, I)^T + bias (O) -> bf16 (..., O).
// forward  y = x W^T + b       bf16 GEMM, bias epilogue (bf16 bias: cuBLASLt's bias has the
//                              output's type, as autocast casts the bias too)
// backward dx = dy W            in x's dtype (bf16 or fp32 output)
//          dW = dy^T x, db      one fp32-output GEMM, then the column sum of dy (bias_grad)
Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t R,
                   int64_t I, int64_t O) {
  DINO_CHECK(R > 0 && I > 0 && O > 0, "[linear] empty operands x ", shape_str(x.shape()),
             " weight ", shape_str(weight.shape()), " are not supported on CUDA");
  const Tensor xb = as_bf16(x);
  const Tensor wb = weight.bf16_copy();  // on the parameter's own handle: cached
  const Tensor bb = bias.defined() ? bias.bf16_copy() : Tensor();
  Shape so = x.shape();
  so.back() = O;
  Tensor out = Tensor::empty(so, DType::bf16, Device::cuda);
  kg::gemm(out.raw_data(), true, bf16_ptr(xb), bf16_ptr(wb), opt_ptr(bb),
           bb.defined() ? kg::GemmEpilogue::bias : kg::GemmEpilogue::none, R, O, I, false, true, 1,
           0, 0, 0, cuda_stream());
  if (needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad();
    const bool gbias = bias.defined() && bias.requires_grad();
    const Tensor xd = (gw || gbias) ? xb.detach() : Tensor();  // dW reads bf16 x
    const Tensor wd = gx ? wb : Tensor();                      // dx reads the same bf16 W
    const DType xdt = x.dtype(), wdt = weight.dtype(), bdt = bias.defined() ? bias.dtype() : DType::f32;
    const Shape xshape = x.shape(), wshape = weight.shape(),
                bshape = bias.defined() ? bias.shape() : Shape{};
    record(out, "linear", {x, weight, bias}, [=](const Tensor& g_in) {
      const Tensor g = as_bf16(g_in);
      Tensor dx, dw, db;
      if (gx) {
        dx = Tensor::empty(xshape, xdt, Device::cuda);
        kg::gemm(dx.raw_data(), xdt == DType::bf16, bf16_ptr(g), bf16_ptr(wd), nullptr,
                 kg::GemmEpilogue::none, R, I, O, false, false, 1, 0, 0, 0, cuda_stream());
      }
      if (gw || gbias) {
        // Without a weight gradient the product still runs, for its epilogue's db (a bias
        // trained under a frozen weight: rare, so no separate column-sum kernel).
        Tensor dwf = Tensor::empty({O, I}, DType::f32, Device::cuda);
        Tensor dbf = gbias ? Tensor::empty({O}, DType::f32, Device::cuda) : Tensor();
        kg::gemm(f32_ptr(dwf), false, bf16_ptr(g), bf16_ptr(xd), opt_ptr(dbf),
                 gbias ? kg::GemmEpilogue::bias_grad : kg::GemmEpilogue::none, O, I, R, true,
                 false, 1, 0, 0, 0, cuda_stream());
        if (gw) dw = in_dtype(dwf, wdt).reshape(wshape);
        if (gbias) db = in_dtype(dbf, bdt).reshape(bshape);
      }
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

// weight_norm on the GPU: f32 v (K, C), g (K) -> f32 w (K, C), one warp per row.
Tensor weight_norm_cuda(const Tensor& v, const Tensor& g, int64_t K, int64_t C) {
  DINO_CHECK(v.dtype() == DType::f32 && g.dtype() == DType::f32,
             "[weight_norm] v and g must be f32 on CUDA, got ", dtype_name(v.dtype()), " and ",
             dtype_name(g.dtype()));
  DINO_CHECK(K > 0 && C > 0, "[weight_norm] empty v ", shape_str(v.shape()),
             " is not supported on CUDA");
  Tensor w = Tensor::empty({K, C}, DType::f32, Device::cuda);
  Tensor vnorm = Tensor::empty({K}, DType::f32, Device::cuda);
  kg::weight_norm_forward(f32_ptr(w), nullptr, f32_ptr(vnorm), f32_ptr(v), f32_ptr(g), K, int(C),
                          cuda_stream());
  if (needs_grad({v, g})) {
    const Tensor vd = v.detach(), gd = g.detach();
    const bool gv = v.requires_grad(), gg = g.requires_grad();
    const Shape gshape = g.shape();
    record(w, "weight_norm", {v, g}, [=](const Tensor& dw_in) {
      const Tensor dw = in_dtype(dw_in, DType::f32);
      Tensor dv = gv ? Tensor::empty({K, C}, DType::f32, Device::cuda) : Tensor();
      Tensor dg = gg ? Tensor::empty(gshape, DType::f32, Device::cuda) : Tensor();
      kg::weight_norm_backward(gv ? f32_ptr(dv) : nullptr, gg ? f32_ptr(dg) : nullptr, f32_ptr(dw),
                               f32_ptr(vd), f32_ptr(gd), f32_ptr(vnorm), K, int(C), cuda_stream());
      return std::vector<Tensor>{dv, dg};
    });
  }
  return w;
}

// DINO's last layer as ONE node on the GPU: w = g * v / ||v|| per row in f32, written
// straight as the bf16 GEMM operand; logits (..., K) = x w^T in f32 (ARCHITECTURE §3: fp32 output).
// backward: dx = dy w (x's dtype); dw = dy^T x (fp32 GEMM) then the weight-norm backward
// (dv, and dg only when g trains: with norm_last_layer it is frozen).
Tensor weight_norm_linear_cuda(const Tensor& x, const Tensor& v, const Tensor& g) {
  DINO_CHECK(v.dtype() == DType::f32 && g.dtype() == DType::f32,
             "[weight_norm_linear] v and g must be f32 on CUDA, got ", dtype_name(v.dtype()),
             " and ", dtype_name(g.dtype()));
  const int64_t K = v.size(0), C = v.size(1), R = rows_of(x);
  DINO_CHECK(R > 0 && K > 0 && C > 0, "[weight_norm_linear] empty operands x ",
             shape_str(x.shape()), " v ", shape_str(v.shape()), " are not supported on CUDA");
  const Tensor xb = as_bf16(x);
  Tensor wb = Tensor::empty({K, C}, DType::bf16, Device::cuda);
  Tensor vnorm = Tensor::empty({K}, DType::f32, Device::cuda);
  kg::weight_norm_forward(nullptr, bf16_ptr(wb), f32_ptr(vnorm), f32_ptr(v), f32_ptr(g), K,
                          int(C), cuda_stream());
  Shape so = x.shape();
  so.back() = K;
  Tensor out = Tensor::empty(so, DType::f32, Device::cuda);
  kg::gemm(out.raw_data(), false, bf16_ptr(xb), bf16_ptr(wb), nullptr, kg::GemmEpilogue::none, R,
           K, C, false, true, 1, 0, 0, 0, cuda_stream());
  if (needs_grad({x, v, g})) {
    const bool gx = x.requires_grad(), gv = v.requires_grad(), gg = g.requires_grad();
    const Tensor xd = (gv || gg) ? xb.detach() : Tensor();
    const Tensor vd = v.detach(), gd = g.detach();
    const DType xdt = x.dtype();
    const Shape xshape = x.shape(), gshape = g.shape();
    record(out, "weight_norm_linear", {x, v, g}, [=](const Tensor& g_in) {
      const Tensor dy = as_bf16(g_in);
      Tensor dx, dv, dg;
      if (gx) {
        dx = Tensor::empty(xshape, xdt, Device::cuda);
        kg::gemm(dx.raw_data(), xdt == DType::bf16, bf16_ptr(dy), bf16_ptr(wb), nullptr,
                 kg::GemmEpilogue::none, R, C, K, false, false, 1, 0, 0, 0, cuda_stream());
      }
      if (gv || gg) {
        Tensor dw = Tensor::empty({K, C}, DType::f32, Device::cuda);
        kg::gemm(f32_ptr(dw), false, bf16_ptr(dy), bf16_ptr(xd), nullptr, kg::GemmEpilogue::none,
                 K, C, R, true, false, 1, 0, 0, 0, cuda_stream());
        if (gv) dv = Tensor::empty({K, C}, DType::f32, Device::cuda);
        if (gg) dg = Tensor::empty(gshape, DType::f32, Device::cuda);
        kg::weight_norm_backward(gv ? f32_ptr(dv) : nullptr, gg ? f32_ptr(dg) : nullptr,
                                 f32_ptr(dw), f32_ptr(vd), f32_ptr(gd), f32_ptr(vnorm), K, int(C),
                                 cuda_stream());
      }
      return std::vector<Tensor>{dx, dv, dg};
    });
  }
  return out;
}

// img f32 (B, C, H, W) -> f32 tokens (B, Np, D): im2col to bf16 (one pass over the image),
// then one fp32-output GEMM against the bf16 copy of the (D, C*P*P) weight with the f32 bias
// epilogue. Backward: dW and db from one fp32-output GEMM with bias_grad (a column sum of dy);
// the bf16 patches are saved (half the image's bytes). No image gradient (images never need
// one; the op refuses an image that requires grad).
Tensor patchify_cuda(const Tensor& img, const Tensor& weight, const Tensor& bias, int64_t B,
                     int64_t C, int64_t H, int64_t W, int64_t D, int64_t P) {
  DINO_CHECK(img.dtype() == DType::f32, "[patchify] img must be f32 on CUDA, got ",
             dtype_name(img.dtype()));
  DINO_CHECK(!img.requires_grad(), "[patchify] img requires grad, but on CUDA patchify computes "
             "no image gradient (images never need one): detach the images, or run on --device "
             "cpu");
  const int64_t Np = (H / P) * (W / P), CPP = C * P * P, R = B * Np;
  DINO_CHECK(R > 0 && D > 0, "[patchify] empty batch ", shape_str(img.shape()),
             " is not supported on CUDA");
  Tensor cols = Tensor::empty({R, CPP}, DType::bf16, Device::cuda);
  kg::im2col_patches(bf16_ptr(cols), f32_ptr(img), B, int(C), int(H), int(W), int(P),
                     cuda_stream());
  const Tensor wb = weight.bf16_copy();  // (D, C, P, P) = (D, CPP), on the parameter's handle
  const Tensor bf = bias.defined() ? in_dtype(bias, DType::f32) : Tensor();  // fp32 output: f32 bias
  Tensor out = Tensor::empty({B, Np, D}, DType::f32, Device::cuda);
  kg::gemm(out.raw_data(), false, bf16_ptr(cols), bf16_ptr(wb), opt_ptr(bf),
           bf.defined() ? kg::GemmEpilogue::bias : kg::GemmEpilogue::none, R, D, CPP, false, true,
           1, 0, 0, 0, cuda_stream());
  if (needs_grad({img, weight, bias})) {
    const bool gw = weight.requires_grad(), gbias = bias.defined() && bias.requires_grad();
    const DType wdt = weight.dtype(), bdt = bias.defined() ? bias.dtype() : DType::f32;
    const Shape wshape = weight.shape(), bshape = bias.defined() ? bias.shape() : Shape{};
    record(out, "patchify", {img, weight, bias}, [=](const Tensor& g_in) {
      const Tensor dy = as_bf16(g_in);  // the f32 stream's gradient, rounded for the GEMM
      Tensor dw, db;
      Tensor dwf = Tensor::empty({D, CPP}, DType::f32, Device::cuda);
      Tensor dbf = gbias ? Tensor::empty({D}, DType::f32, Device::cuda) : Tensor();
      kg::gemm(f32_ptr(dwf), false, bf16_ptr(dy), bf16_ptr(cols), opt_ptr(dbf),
               gbias ? kg::GemmEpilogue::bias_grad : kg::GemmEpilogue::none, D, CPP, R, true,
               false, 1, 0, 0, 0, cuda_stream());
      if (gw) dw = in_dtype(dwf, wdt).reshape(wshape);
      if (gbias) db = in_dtype(dbf, bdt).reshape(bshape);
      return std::vector<Tensor>{Tensor(), dw, db};
    });
  }
  return out;
}
#endif  // DINO_HAS_CUDA

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "a");
  check_defined("matmul", b, "b");
  if (on_cuda(a))
    check_cuda_operands("matmul", {{&a, "a"}, {&b, "b"}});
  else
    check_same("matmul", {&a, &b});
  DINO_CHECK(a.dim() >= 2 && b.dim() >= 2, "[matmul] needs at least 2-D operands, got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  DINO_CHECK(b.size(-2) == K, "[matmul] inner dims differ: ", shape_str(a.shape()), " @ ",
             shape_str(b.shape()));
  const bool shared_b = b.dim() == 2;
  const Shape batch(a.shape().begin(), a.shape().end() - 2);
  DINO_CHECK(shared_b || Shape(b.shape().begin(), b.shape().end() - 2) == batch,
             "[matmul] batch dims differ: ", shape_str(a.shape()), " @ ", shape_str(b.shape()));
  const int64_t nb = shape_numel(batch);
  Shape so = batch;
  so.push_back(M);
  so.push_back(N);
  if (on_cuda(a)) {
#ifdef DINO_HAS_CUDA
    return matmul_cuda(a, b, so, nb, M, K, N, shared_b);
#endif
  }
  Tensor out = Tensor::empty(so, a.dtype(), a.device());
  dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < nb; ++i)
      kc::gemm<T>(out.data<T>() + i * M * N, a.data<T>() + i * M * K,
                  b.data<T>() + (shared_b ? 0 : i * K * N), M, N, K, false, false, T(1), T(0));
  });
  if (needs_grad({a, b})) {
    Tensor ad = a.detach(), bd = b.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "matmul", {a, b}, [=](const Tensor& g) {
      Tensor da, db;
      dispatch_float("matmul", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if (ga) {
          da = Tensor::empty(ad.shape(), g.dtype(), g.device());
          for (int64_t i = 0; i < nb; ++i)  // da = g @ b^T
            kc::gemm<T>(da.data<T>() + i * M * K, g.data<T>() + i * M * N,
                        bd.data<T>() + (shared_b ? 0 : i * K * N), M, K, N, false, true, T(1), T(0));
        }
        if (gb) {
          db = Tensor::empty(bd.shape(), g.dtype(), g.device());
          if (shared_b)  // the batch folds into the GEMM's inner dim: db = a^T @ g over all rows
            kc::gemm<T>(db.data<T>(), ad.data<T>(), g.data<T>(), K, N, nb * M, true, false, T(1),
                        T(0));
          else
            for (int64_t i = 0; i < nb; ++i)
              kc::gemm<T>(db.data<T>() + i * K * N, ad.data<T>() + i * M * K,
                          g.data<T>() + i * M * N, K, N, M, true, false, T(1), T(0));
        }
      });
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined("linear", x, "x");
  check_defined("linear", weight, "weight");
  if (on_cuda(x))
    check_cuda_operands("linear", {{&x, "x"}, {&weight, "weight"}, {&bias, "bias"}});
  else
    check_same("linear", {&x, &weight, &bias});
  DINO_CHECK(weight.dim() == 2, "[linear] weight must be (out, in), got ",
             shape_str(weight.shape()));
  DINO_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "[linear] x has ", x.size(-1),
             " features in its last dim, weight expects ", weight.size(1));
  const int64_t I = weight.size(1), O = weight.size(0), R = rows_of(x);
  DINO_CHECK(!bias.defined() || bias.numel() == O, "[linear] bias has ", bias.numel(),
             " elements, expected ", O);
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return linear_cuda(x, weight, bias, R, I, O);
#endif
  }
  Shape so = x.shape();
  so.back() = O;
  Tensor out = Tensor::empty(so, x.dtype(), x.device());
  dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::linear_forward<T>(out.data<T>(), x.data<T>(), weight.data<T>(),
                          bias.defined() ? bias.data<T>() : nullptr, R, I, O);
  });
  if (needs_grad({x, weight, bias})) {
    Tensor xd = x.detach(), wd = weight.detach();
    const bool gx = x.requires_grad(), gw = weight.requires_grad();
    const bool gbias = bias.defined() && bias.requires_grad();
    const Shape bshape = bias.defined() ? bias.shape() : Shape{};
    record(out, "linear", {x, weight, bias}, [=](const Tensor& g) {
      Tensor dx, dw, db;
      dispatch_float("linear", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if (gx) {
          dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
          kc::gemm<T>(dx.data<T>(), g.data<T>(), wd.data<T>(), R, I, O, false, false, T(1), T(0));
        }
        if (gw) {
          dw = Tensor::empty(wd.shape(), g.dtype(), g.device());
          kc::gemm<T>(dw.data<T>(), g.data<T>(), xd.data<T>(), O, I, R, true, false, T(1), T(0));
        }
      });
      if (gbias) db = bias_grad(g, R, O).reshape(bshape);
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

Tensor weight_norm(const Tensor& v, const Tensor& g) {
  check_defined("weight_norm", v, "v");
  check_defined("weight_norm", g, "g");
  if (on_cuda(v))
    check_cuda_operands("weight_norm", {{&v, "v"}, {&g, "g"}});
  else
    check_same("weight_norm", {&v, &g});
  DINO_CHECK(v.dim() == 2, "[weight_norm] v must be (K, C), got ", shape_str(v.shape()));
  const int64_t K = v.size(0), C = v.size(1);
  DINO_CHECK(g.numel() == K, "[weight_norm] g has ", g.numel(), " elements, expected ", K,
             " (rows of v)");
  if (on_cuda(v)) {
#ifdef DINO_HAS_CUDA
    return weight_norm_cuda(v, g, K, C);
#endif
  }
  Tensor w = Tensor::empty({K, C}, v.dtype(), v.device());
  Tensor vnorm = Tensor::empty({K}, v.dtype(), v.device());
  dispatch_float("weight_norm", v.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::weight_norm_forward<T>(w.data<T>(), vnorm.data<T>(), v.data<T>(), g.data<T>(), K, C);
  });
  if (needs_grad({v, g})) {
    Tensor vd = v.detach(), gd = g.detach();
    const Shape gshape = g.shape();
    record(w, "weight_norm", {v, g}, [=](const Tensor& dw) {
      Tensor dv = Tensor::empty({K, C}, dw.dtype(), dw.device());
      Tensor dg = Tensor::empty(gshape, dw.dtype(), dw.device());
      dispatch_float("weight_norm", dw.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::weight_norm_backward<T>(dv.data<T>(), dg.data<T>(), dw.data<T>(), vd.data<T>(),
                                    gd.data<T>(), vnorm.data<T>(), K, C);
      });
      return std::vector<Tensor>{dv, dg};
    });
  }
  return w;
}

Tensor weight_norm_linear(const Tensor& x, const Tensor& v, const Tensor& g) {
  if (on_cuda(x)) {  // one node on the GPU (the CPU form below is two)
    check_defined("weight_norm_linear", x, "x");
    check_defined("weight_norm_linear", v, "v");
    check_defined("weight_norm_linear", g, "g");
    check_cuda_operands("weight_norm_linear", {{&x, "x"}, {&v, "v"}, {&g, "g"}});
    DINO_CHECK(v.dim() == 2, "[weight_norm_linear] v must be (K, C), got ", shape_str(v.shape()));
    DINO_CHECK(g.numel() == v.size(0), "[weight_norm_linear] g has ", g.numel(),
               " elements, expected ", v.size(0), " (rows of v)");
    DINO_CHECK(x.dim() >= 1 && x.size(-1) == v.size(1), "[weight_norm_linear] x has ",
               x.dim() ? x.size(-1) : 0, " features in its last dim, v expects ", v.size(1));
#ifdef DINO_HAS_CUDA
    return weight_norm_linear_cuda(x, v, g);
#endif
  }
  return linear(x, weight_norm(v, g), Tensor());
}

Tensor patchify(const Tensor& img, const Tensor& weight, const Tensor& bias) {
  check_defined("patchify", img, "img");
  check_defined("patchify", weight, "weight");
  if (on_cuda(img))
    check_cuda_operands("patchify", {{&img, "img"}, {&weight, "weight"}, {&bias, "bias"}});
  else
    check_same("patchify", {&img, &weight, &bias});
  DINO_CHECK(img.dim() == 4, "[patchify] img must be (B, C, H, W), got ", shape_str(img.shape()));
  DINO_CHECK(weight.dim() == 4 && weight.size(2) == weight.size(3), "[patchify] weight must be "
             "(D, C, P, P), got ", shape_str(weight.shape()));
  const int64_t B = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3);
  const int64_t D = weight.size(0), P = weight.size(2);
  DINO_CHECK(weight.size(1) == C, "[patchify] image has ", C, " channels, weight expects ",
             weight.size(1));
  DINO_CHECK(H >= P && W >= P, "[patchify] image ", H, "x", W, " is smaller than the patch ", P);
  DINO_CHECK(!bias.defined() || bias.numel() == D, "[patchify] bias has ", bias.numel(),
             " elements, expected ", D);
  if (on_cuda(img)) {
#ifdef DINO_HAS_CUDA
    return patchify_cuda(img, weight, bias, B, C, H, W, D, P);
#endif
  }
  const int64_t Np = (H / P) * (W / P), CPP = C * P * P;
  Tensor cols = Tensor::empty({B * Np, CPP}, img.dtype(), img.device());
  Tensor out = Tensor::empty({B, Np, D}, img.dtype(), img.device());
  dispatch_float("patchify", img.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::im2col_patches<T>(cols.data<T>(), img.data<T>(), B, C, H, W, P);
    kc::linear_forward<T>(out.data<T>(), cols.data<T>(), weight.data<T>(),
                          bias.defined() ? bias.data<T>() : nullptr, B * Np, CPP, D);
  });
  if (needs_grad({img, weight, bias})) {
    Tensor wd = weight.detach();
    const bool gi = img.requires_grad(), gw = weight.requires_grad();
    const bool gbias = bias.defined() && bias.requires_grad();
    const Shape ishape = img.shape(), wshape = weight.shape(),
                bshape = bias.defined() ? bias.shape() : Shape{};
    record(out, "patchify", {img, weight, bias}, [=](const Tensor& g) {
      Tensor dimg, dw, db;
      const int64_t R = B * Np;
      dispatch_float("patchify", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if (gi) {
          Tensor dcols = Tensor::empty({R, CPP}, g.dtype(), g.device());
          kc::gemm<T>(dcols.data<T>(), g.data<T>(), wd.data<T>(), R, CPP, D, false, false, T(1),
                      T(0));
          dimg = Tensor::empty(ishape, g.dtype(), g.device());
          kc::col2im_patches<T>(dimg.data<T>(), dcols.data<T>(), B, C, H, W, P);
        }
        if (gw) {
          dw = Tensor::empty(wshape, g.dtype(), g.device());
          kc::gemm<T>(dw.data<T>(), g.data<T>(), cols.data<T>(), D, CPP, R, true, false, T(1),
                      T(0));
        }
      });
      if (gbias) db = bias_grad(g, B * Np, D).reshape(bshape);
      return std::vector<Tensor>{dimg, dw, db};
    });
  }
  return out;
}

}  // namespace dino
