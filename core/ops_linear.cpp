// GEMM-backed ops: matmul, linear, the weight-normalised linear of DINO's head, and the
// patch embedding (im2col + GEMM).
#include <vector>

#include "core/ops_util.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

namespace {

// Column sums of g viewed as (R, C): the gradient of a broadcast bias. Rows are added in
// order into a double accumulator, walking memory contiguously.
Tensor column_sums(const Tensor& g, int64_t R, int64_t C) {
  Tensor out = Tensor::empty({C}, g.dtype(), g.device());
  dispatch_float("bias_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    std::vector<double> acc(size_t(C), 0.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += double(pg[r * C + c]);
    T* po = out.data<T>();
    for (int64_t c = 0; c < C; ++c) po[c] = T(acc[size_t(c)]);
  });
  return out;
}

// y (R, O) = x (R, I) @ w (O, I)^T + bias (O); bias may be undefined.
template <class T>
void linear_rows(T* y, const T* x, const T* w, const T* bias, int64_t R, int64_t I, int64_t O) {
  kc::gemm<T>(y, x, w, R, O, I, false, true, T(1), T(0));
  if (!bias) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t o = 0; o < O; ++o) y[r * O + o] += bias[o];
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "a");
  check_defined("matmul", b, "b");
  check_same("matmul", {&a, &b});
  require_cpu("matmul", a);
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
  check_same("linear", {&x, &weight, &bias});
  require_cpu("linear", x);
  DINO_CHECK(weight.dim() == 2, "[linear] weight must be (out, in), got ",
             shape_str(weight.shape()));
  DINO_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "[linear] x has ", x.size(-1),
             " features in its last dim, weight expects ", weight.size(1));
  const int64_t I = weight.size(1), O = weight.size(0), R = rows_of(x);
  DINO_CHECK(!bias.defined() || bias.numel() == O, "[linear] bias has ", bias.numel(),
             " elements, expected ", O);
  Shape so = x.shape();
  so.back() = O;
  Tensor out = Tensor::empty(so, x.dtype(), x.device());
  dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    linear_rows<T>(out.data<T>(), x.data<T>(), weight.data<T>(),
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
      if (gbias) db = column_sums(g, R, O).reshape(bshape);
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

Tensor weight_norm(const Tensor& v, const Tensor& g) {
  check_defined("weight_norm", v, "v");
  check_defined("weight_norm", g, "g");
  check_same("weight_norm", {&v, &g});
  require_cpu("weight_norm", v);
  DINO_CHECK(v.dim() == 2, "[weight_norm] v must be (K, C), got ", shape_str(v.shape()));
  const int64_t K = v.size(0), C = v.size(1);
  DINO_CHECK(g.numel() == K, "[weight_norm] g has ", g.numel(), " elements, expected ", K,
             " (rows of v)");
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
  return linear(x, weight_norm(v, g), Tensor());
}

Tensor patchify(const Tensor& img, const Tensor& weight, const Tensor& bias) {
  check_defined("patchify", img, "img");
  check_defined("patchify", weight, "weight");
  check_same("patchify", {&img, &weight, &bias});
  require_cpu("patchify", img);
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
  const int64_t Np = (H / P) * (W / P), CPP = C * P * P;
  Tensor cols = Tensor::empty({B * Np, CPP}, img.dtype(), img.device());
  Tensor out = Tensor::empty({B, Np, D}, img.dtype(), img.device());
  dispatch_float("patchify", img.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::im2col_patches<T>(cols.data<T>(), img.data<T>(), B, C, H, W, P);
    linear_rows<T>(out.data<T>(), cols.data<T>(), weight.data<T>(),
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
      if (gbias) db = column_sums(g, B * Np, D).reshape(bshape);
      return std::vector<Tensor>{dimg, dw, db};
    });
  }
  return out;
}

}  // namespace dino
