// Ops that move data: permute (a copy, since tensors stay contiguous), concat along dim 0,
// and the two token ops the ViT needs around its [CLS] token. On CUDA (kernels/cuda/shape.cu)
// they move bf16 or f32 elements and keep the input's dtype; concat is a device copy per input.
#include <cstring>

#include "core/ops_util.h"

namespace dino {

using namespace detail;

namespace {

// Copies x into out = x.permute(dims), element by element (any dtype of 1..8 bytes).
void permute_copy(Tensor& out, const Tensor& x, const std::vector<int64_t>& dims) {
  const Shape& si = x.shape();
  const int nd = int(si.size());
  std::vector<int64_t> in_stride(nd, 1);
  for (int d = nd - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * si[d + 1];
  std::vector<int64_t> step(nd);  // input stride of each output dim
  for (int d = 0; d < nd; ++d) step[d] = in_stride[dims[d]];
  const Shape& so = out.shape();
  const size_t es = dtype_size(x.dtype());
  const char* pi = static_cast<const char*>(x.raw_data());
  char* po = static_cast<char*>(out.raw_data());
  std::vector<int64_t> idx(nd, 0);
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t src = 0;
    for (int d = 0; d < nd; ++d) src += idx[d] * step[d];
    std::memcpy(po + i * es, pi + src * es, es);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < so[d]) break;
      idx[d] = 0;
    }
  }
}

#ifdef DINO_HAS_CUDA
namespace kg = kernels::cuda;

// The CUDA kernels move 2- or 4-byte elements (bf16, f32, i32).
int cuda_elem_size(const char* op, const Tensor& t) {
  const int es = int(dtype_size(t.dtype()));
  DINO_CHECK(es == 2 || es == 4, "[", op, "] moves 2- or 4-byte elements on CUDA (bf16, f32), got ",
             dtype_name(t.dtype()));
  return es;
}

void check_cuda_float(const char* op, const Tensor& t) {
  DINO_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, "[", op,
             "] gradients must be f32 or bf16 on CUDA, got ", dtype_name(t.dtype()));
}
#endif

}  // namespace

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
  Tensor out = Tensor::empty(so, x.dtype(), x.device());
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    kg::permute_elements(out.raw_data(), x.raw_data(), cuda_elem_size("permute", x),
                         x.shape().data(), dims.data(), int(nd), cuda_stream());
#endif
  } else {
    permute_copy(out, x, dims);
  }
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
  check_same("prepend_token", {&x, &token});
  DINO_CHECK(x.dim() == 3, "[prepend_token] x must be (B, N, D), got ", shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  DINO_CHECK(token.numel() == D, "[prepend_token] token has ", token.numel(),
             " elements, expected ", D, " (last dim of x)");
  Tensor out = Tensor::empty({B, N + 1, D}, x.dtype(), x.device());
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    kg::prepend_token_forward(out.raw_data(), x.raw_data(), token.raw_data(),
                              cuda_elem_size("prepend_token", x), B, N, D, cuda_stream());
    if (needs_grad({x, token})) {
      const Shape tshape = token.shape();
      record(out, "prepend_token", {x, token}, [=](const Tensor& g) {
        check_cuda_float("prepend_token", g);
        Tensor dx = Tensor::empty({B, N, D}, g.dtype(), g.device());
        Tensor dt = Tensor::empty(tshape, g.dtype(), g.device());
        kg::prepend_token_backward(dx.raw_data(), dt.raw_data(), g.raw_data(),
                                   g.dtype() == DType::bf16, B, N, D, cuda_stream());
        return std::vector<Tensor>{dx, dt};
      });
    }
#endif
    return out;
  }
  const size_t es = dtype_size(x.dtype());
  char* po = static_cast<char*>(out.raw_data());
  const char* px = static_cast<const char*>(x.raw_data());
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(po + b * (N + 1) * D * es, token.raw_data(), D * es);
    std::memcpy(po + (b * (N + 1) + 1) * D * es, px + b * N * D * es, N * D * es);
  }
  if (needs_grad({x, token})) {
    const Shape tshape = token.shape();
    record(out, "prepend_token", {x, token}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty({B, N, D}, g.dtype(), g.device());
      Tensor dt = Tensor::zeros(tshape, g.dtype(), g.device());
      dispatch_float("prepend_token", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* pg = g.data<T>();
        T *pdx = dx.data<T>(), *pdt = dt.data<T>();
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t d = 0; d < D; ++d) pdt[d] += pg[b * (N + 1) * D + d];
          std::memcpy(pdx + b * N * D, pg + (b * (N + 1) + 1) * D, N * D * sizeof(T));
        }
      });
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
  Tensor out = Tensor::empty({B, D}, x.dtype(), x.device());
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    const int es = cuda_elem_size("select_token", x);
    kg::select_token_forward(out.raw_data(), x.raw_data(), es, B, N, D, i, cuda_stream());
    if (needs_grad({x})) {
      record(out, "select_token", {x}, [=](const Tensor& g) {
        Tensor dx = Tensor::empty({B, N, D}, g.dtype(), g.device());
        kg::select_token_backward(dx.raw_data(), g.raw_data(), cuda_elem_size("select_token", g),
                                  B, N, D, i, cuda_stream());
        return std::vector<Tensor>{dx};
      });
    }
#endif
    return out;
  }
  const size_t es = dtype_size(x.dtype());
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(static_cast<char*>(out.raw_data()) + b * D * es,
                static_cast<const char*>(x.raw_data()) + (b * N + i) * D * es, D * es);
  if (needs_grad({x})) {
    record(out, "select_token", {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::zeros({B, N, D}, g.dtype(), g.device());
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(static_cast<char*>(dx.raw_data()) + (b * N + i) * D * es,
                    static_cast<const char*>(g.raw_data()) + b * D * es, D * es);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace dino
