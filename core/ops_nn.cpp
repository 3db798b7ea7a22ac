// Fused neural-network ops, each ONE autograd node with a fused backward: layer_norm,
// softmax, log_softmax, l2_normalize, attention; plus drop_path and the bicubic grid resize.
#include "core/ops_util.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_defined("layer_norm", x, "x");
  check_defined("layer_norm", weight, "weight");
  check_defined("layer_norm", bias, "bias");
  check_same("layer_norm", {&x, &weight, &bias});
  require_cpu("layer_norm", x);
  DINO_CHECK(x.dim() >= 1, "[layer_norm] x needs at least one dim");
  const int64_t N = rows_of(x), C = cols_of(x);
  DINO_CHECK(weight.numel() == C, "[layer_norm] weight has ", weight.numel(),
             " elements, expected ", C, " (last dim of x)");
  DINO_CHECK(bias.numel() == C, "[layer_norm] bias has ", bias.numel(), " elements, expected ",
             C, " (last dim of x)");
  DINO_CHECK(eps > 0, "[layer_norm] eps must be positive, got ", eps);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({N}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N}, x.dtype(), x.device());
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                             weight.data<T>(), bias.data<T>(), N, C, eps);
  });
  if (needs_grad({x, weight, bias})) {
    Tensor xd = x.detach(), wd = weight.detach();
    const Shape ws = weight.shape(), bs = bias.shape();
    record(out, "layer_norm", {x, weight, bias}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
      Tensor dw = Tensor::empty(ws, g.dtype(), g.device());
      Tensor db = Tensor::empty(bs, g.dtype(), g.device());
      dispatch_float("layer_norm", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::layernorm_backward<T>(dx.data<T>(), dw.data<T>(), db.data<T>(), g.data<T>(),
                                  xd.data<T>(), mean.data<T>(), rstd.data<T>(), wd.data<T>(), N, C);
      });
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

namespace {

Tensor softmax_like(const char* op, const Tensor& x, bool log_space) {
  check_defined(op, x, "x");
  require_cpu(op, x);
  DINO_CHECK(x.dim() >= 1, "[", op, "] x needs at least one dim");
  const int64_t N = rows_of(x), C = cols_of(x);
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
  require_cpu("l2_normalize", x);
  DINO_CHECK(x.dim() >= 1, "[l2_normalize] x needs at least one dim");
  const int64_t N = rows_of(x), C = cols_of(x);
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

Tensor attention(const Tensor& qkv, int64_t heads, Tensor* probs) {
  check_defined("attention", qkv, "qkv");
  require_cpu("attention", qkv);
  DINO_CHECK(qkv.dim() == 3, "[attention] qkv must be (B, N, 3*D), got ", shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), N = qkv.size(1), D3 = qkv.size(2);
  DINO_CHECK(heads > 0 && D3 % (3 * heads) == 0, "[attention] last dim ", D3,
             " is not 3 * heads * head_dim for ", heads, " heads");
  const int64_t Dh = D3 / (3 * heads), D = D3 / 3;
  Tensor out = Tensor::empty({B, N, D}, qkv.dtype(), qkv.device());
  Tensor lse = Tensor::empty({B, heads, N}, qkv.dtype(), qkv.device());
  if (probs) *probs = Tensor::empty({B, heads, N, N}, qkv.dtype(), qkv.device());
  dispatch_float("attention", qkv.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::attention_forward<T>(out.data<T>(), lse.data<T>(), probs ? probs->data<T>() : nullptr,
                             qkv.data<T>(), B, N, heads, Dh);
  });
  if (needs_grad({qkv})) {
    Tensor qd = qkv.detach(), od = out.detach();
    record(out, "attention", {qkv}, [=](const Tensor& g) {
      Tensor dqkv = Tensor::empty({B, N, D3}, g.dtype(), g.device());
      dispatch_float("attention", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::attention_backward<T>(dqkv.data<T>(), g.data<T>(), qd.data<T>(), od.data<T>(),
                                  lse.data<T>(), B, N, heads, Dh);
      });
      return std::vector<Tensor>{dqkv};
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
  require_cpu("resize_bicubic", grid);
  DINO_CHECK(grid.dim() == 3, "[resize_bicubic] grid must be (H, W, C), got ",
             shape_str(grid.shape()));
  DINO_CHECK(Ho > 0 && Wo > 0 && scale_h > 0 && scale_w > 0,
             "[resize_bicubic] output size and scales must be positive");
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
