// Fused neural-network ops, each ONE autograd node with a fused backward: softmax,
// log_softmax, l2_normalize, nearest_row_diff, attention, drop_path, and the bicubic grid resize
// (LayerNorm: ops_layer_norm.cpp), each on the backend of its tensors' device (core/backend.h).
// Precision (ARCHITECTURE §3): softmax, log_softmax, l2_normalize and drop_path keep their
// input's dtype (f32 or bf16) with f32 math; attention runs on bf16 qkv; resize_bicubic is
// f32. A gradient has its input's dtype; an upstream gradient of another float type is cast
// first.
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/batch_shard.h"
#include "core/ops_util.h"
#include "core/precision.h"
#include "core/rng.h"

namespace dino {

using namespace detail;

namespace {

// The softmax node's backward reads x and lse, or out: whichever the backend's does.
Tensor softmax_like(const char* op, const Tensor& x, bool log_space) {
  check_defined(op, x, "x");
  precision::check_float_operands(op, {{&x, "x"}});
  DINO_CHECK(x.dim() >= 1, "[", op, "] x needs at least one dim");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor lse = Tensor::empty({rows_of(x)}, precision::accumulator(x), x.device());
  backend(x.device(), op).softmax(out, lse, x, log_space);
  if (needs_grad({x})) {
    const Tensor xd = x.detach(), od = out.detach();
    record(out, op, {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
      backend(xd.device()).softmax_backward(dx, g.to(xd.dtype()), xd, od, lse, log_space);
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
  precision::check_float_operands("l2_normalize", {{&x, "x"}});
  DINO_CHECK(x.dim() >= 1, "[l2_normalize] x needs at least one dim");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor norm = Tensor::empty({rows_of(x)}, precision::accumulator(x), x.device());
  backend(x.device(), "l2_normalize").l2_normalize(out, norm, x, eps);
  if (needs_grad({x})) {
    const Tensor xd = x.detach();
    record(out, "l2_normalize", {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
      backend(xd.device()).l2_normalize_backward(dx, g.to(xd.dtype()), xd, norm, eps);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

// The index is computed and kept on the device: the op queues no copy to the host.
Tensor nearest_row_diff(const Tensor& z, Tensor* index) {
  check_defined("nearest_row_diff", z, "z");
  precision::check_float_operands("nearest_row_diff", {{&z, "z"}});
  DINO_CHECK(z.dim() == 2 && z.size(0) >= 2,
             "[nearest_row_diff] expected z (B, D) with B >= 2, got ", shape_str(z.shape()));
  DINO_CHECK(z.device() == Device::cpu || z.dtype() == DType::f32,
             "[nearest_row_diff] expects f32 z on cuda, got ", dtype_name(z.dtype()));
  Tensor nn = Tensor::empty({z.size(0)}, DType::i32, z.device());
  Tensor diff = Tensor::empty(z.shape(), z.dtype(), z.device());
  backend(z.device(), "nearest_row_diff").nearest_row_diff(nn, diff, z);
  if (needs_grad({z})) {
    const DType dt = z.dtype();
    record(diff, "nearest_row_diff", {z}, [=](const Tensor& g) {
      Tensor dz = Tensor::empty(g.shape(), dt, g.device());
      backend(g.device()).nearest_row_diff_backward(dz, g.to(dt), nn);
      return std::vector<Tensor>{dz};
    });
  }
  if (index) *index = nn;
  return diff;
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
  Tensor lse = Tensor::empty({B, heads, N}, precision::accumulator(qkv), qkv.device());
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

DropPathNoise make_drop_path_noise(uint64_t nonce, Device device) {
  DropPathNoise noise{Tensor::zeros({2}, DType::i32, device)};
  set_drop_path_nonce(noise, nonce);
  return noise;
}

void set_drop_path_nonce(DropPathNoise& noise, uint64_t nonce) {
  check_defined("drop_path", noise.nonce, "nonce");
  noise.next_call = 0;
  if (noise.value == nonce) return;  // zeros() wrote 0 already
  noise.value = nonce;
  Tensor host = Tensor::empty({2}, DType::i32);
  host.data<int32_t>()[0] = int32_t(uint32_t(nonce));
  host.data<int32_t>()[1] = int32_t(uint32_t(nonce >> 32));
  noise.nonce.copy_from(host);
}

namespace detail {

DropPathCall take_drop_path_call(const char* op, const Tensor& x, DropPathNoise& noise) {
  check_defined(op, noise.nonce, "nonce");
  DINO_CHECK(noise.nonce.device() == x.device(), "[", op, "] the nonce is on ",
             device_name(noise.nonce.device()), ", x on ", device_name(x.device()));
  // Local row b is global row ranks * b + rank, the loader's shard layout (core/batch_shard.h).
  const BatchShard shard = current_batch_shard();
  return {noise.nonce, noise.next_call++, shard.rank, shard.ranks};
}

}  // namespace detail

Tensor drop_path(const Tensor& x, double p, bool training, DropPathNoise& noise) {
  check_defined("drop_path", x, "x");
  DINO_CHECK(p >= 0 && p < 1, "[drop_path] probability must be in [0, 1), got ", p);
  if (p == 0 || !training) return x;
  precision::check_float_operands("drop_path", {{&x, "x"}});
  DINO_CHECK(x.dim() >= 1, "[drop_path] x needs a batch dim");
  const DropPathCall dc = take_drop_path_call("drop_path", x, noise);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend(x.device(), "drop_path").drop_path(out, x, dc.nonce, dc.call, dc.rank, dc.ranks, p);
  if (needs_grad({x})) {
    const Shape shape = x.shape();
    const DType dt = x.dtype();
    record(out, "drop_path", {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(shape, dt, g.device());
      backend(g.device()).drop_path(dx, g.to(dt), dc.nonce, dc.call, dc.rank, dc.ranks, p);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

Tensor resize_bicubic(const Tensor& grid, int64_t Ho, int64_t Wo, double scale_h, double scale_w) {
  check_defined("resize_bicubic", grid, "grid");
  precision::check_float_operands("resize_bicubic", {{&grid, "grid"}});
  precision::require_f32_on_cuda("resize_bicubic", grid, "grid", "the position grid");
  DINO_CHECK(grid.dim() == 3, "[resize_bicubic] grid must be (H, W, C), got ",
             shape_str(grid.shape()));
  DINO_CHECK(Ho > 0 && Wo > 0 && scale_h > 0 && scale_w > 0,
             "[resize_bicubic] output size and scales must be positive");
  Tensor out = Tensor::empty({Ho, Wo, grid.size(2)}, grid.dtype(), grid.device());
  backend(grid.device(), "resize_bicubic").resize_bicubic(out, grid, scale_h, scale_w);
  if (needs_grad({grid})) {
    const Shape shape = grid.shape();
    const DType dt = grid.dtype();
    record(out, "resize_bicubic", {grid}, [=](const Tensor& g) {
      Tensor dgrid = Tensor::empty(shape, dt, g.device());
      backend(g.device()).resize_bicubic_backward(dgrid, g.to(dt), scale_h, scale_w);
      return std::vector<Tensor>{dgrid};
    });
  }
  return out;
}

}  // namespace dino
