// Ops that move data: permute (a copy, since tensors stay contiguous), concat along dim 0,
// and the two token ops the ViT needs around its [CLS] token. They keep the input's dtype
// (on CUDA 2- or 4-byte elements); concat is a copy per input.
#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

using namespace detail;

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  check_defined("permute", x, "x");
  const int64_t nd = x.dim();
  DINO_CHECK(int64_t(dims.size()) == nd, "[permute] ", dims.size(), " dims given for a ", nd,
             "-dim tensor");
  std::vector<int64_t> inverse(nd, -1);
  Shape so(nd);
  for (int64_t d = 0; d < nd; ++d) {
    const int64_t k = dims[d];
    DINO_CHECK(k >= 0 && k < nd && inverse[k] < 0, "[permute] dims are not a permutation of 0..",
               nd - 1);
    inverse[k] = d;
    so[d] = x.shape()[k];
  }
  precision::check_movable_operands("permute", {{&x, "x"}});
  Tensor out = Tensor::empty(so, x.dtype(), x.device());
  backend(x.device()).permute(out, x, dims);
  if (needs_grad({x}))
    record(out, "permute", {x},
           [inverse](const Tensor& g) { return std::vector<Tensor>{permute(g, inverse)}; });
  return out;
}

Tensor transpose_last2(const Tensor& x) {
  DINO_CHECK(x.defined() && x.dim() >= 2, "[transpose_last2] needs at least 2 dims");
  std::vector<int64_t> dims(x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  std::swap(dims[x.dim() - 1], dims[x.dim() - 2]);
  return permute(x, dims);
}

Tensor concat(const std::vector<Tensor>& xs) {
  DINO_CHECK(!xs.empty(), "[concat] needs at least one tensor");
  Shape so = xs[0].shape();
  DINO_CHECK(!so.empty(), "[concat] tensors need at least one dim");
  int64_t rows = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_defined("concat", xs[i], "input");
    check_same("concat", {&xs[0], &xs[i]});
    Shape s = xs[i].shape();
    DINO_CHECK(s.size() == so.size() && std::equal(s.begin() + 1, s.end(), so.begin() + 1),
               "[concat] input ", i, " has shape ", shape_str(s), ", incompatible with ",
               shape_str(so), " along dims 1..");
    rows += s[0];
  }
  so[0] = rows;
  Tensor out = Tensor::empty(so, xs[0].dtype(), xs[0].device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    out.narrow(at, x.size(0)).copy_from(x);
    at += x.size(0);
  }
  if (needs_grad(xs)) {
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) sizes.push_back(x.size(0));
    record(out, "concat", xs, [sizes](const Tensor& g) {
      std::vector<Tensor> grads;
      int64_t start = 0;
      for (int64_t n : sizes) {
        grads.push_back(g.narrow(start, n).clone());
        start += n;
      }
      return grads;
    });
  }
  return out;
}

Tensor prepend_token(const Tensor& x, const Tensor& token) {
  check_defined("prepend_token", x, "x");
  check_defined("prepend_token", token, "token");
  precision::check_movable_operands("prepend_token", {{&x, "x"}, {&token, "token"}});
  DINO_CHECK(x.dim() == 3, "[prepend_token] x must be (B, N, D), got ", shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  DINO_CHECK(token.numel() == D, "[prepend_token] token has ", token.numel(),
             " elements, expected ", D, " (last dim of x)");
  Tensor out = Tensor::empty({B, N + 1, D}, x.dtype(), x.device());
  backend(x.device()).prepend_token(out, x, token);
  if (needs_grad({x, token})) {
    const Shape tshape = token.shape();
    record(out, "prepend_token", {x, token}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty({B, N, D}, g.dtype(), g.device());
      Tensor dt = Tensor::empty(tshape, g.dtype(), g.device());
      backend(g.device()).prepend_token_backward(dx, dt, g);
      return std::vector<Tensor>{dx, dt};
    });
  }
  return out;
}

Tensor select_token(const Tensor& x, int64_t i) {
  check_defined("select_token", x, "x");
  DINO_CHECK(x.dim() == 3, "[select_token] x must be (B, N, D), got ", shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  DINO_CHECK(i >= 0 && i < N, "[select_token] token ", i, " out of range for ", N, " tokens");
  precision::check_movable_operands("select_token", {{&x, "x"}});
  Tensor out = Tensor::empty({B, D}, x.dtype(), x.device());
  backend(x.device()).select_token(out, x, i);
  if (needs_grad({x})) {
    record(out, "select_token", {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty({B, N, D}, g.dtype(), g.device());
      backend(g.device()).select_token_backward(dx, g, i);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace dino
