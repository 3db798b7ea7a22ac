// `dino check`'s comparisons (see selfcheck.h): each family's launchers on a few shapes of its
// CUDA test, against the same float64 CPU references with the same tolerances.
#include "testing/cuda/selfcheck.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck_util.h"

namespace dino::kernels::cuda::selfcheck {

namespace {

void check_layernorm(Table& t, Rng& rng) {
  const int shapes[][2] = {{1, 33}, {197, 384}, {3000, 384}};
  const float eps = 1e-6f;
  for (const auto& s : shapes) {
    const int N = s[0], C = s[1];
    const std::string shape = str_cat("N=", N, " C=", C);
    t.run("layernorm", shape, [&] {
      const size_t nc = size_t(N) * C;
      const std::vector<float> x = randn(rng, nc, 1.0, 3.0), w = randn(rng, size_t(C), 0.3, 1.0),
                               b = randn(rng, size_t(C), 0.3), dout = randn(rng, nc);
      Buf<float> dx(x), dw(w), db(b), mean(static_cast<size_t>(N)), rstd(static_cast<size_t>(N));
      Buf<bf16> out(nc), ddout(to_bf16(dout));
      layernorm_forward(out.bf(), mean.get(), rstd.get(), dx.get(), dw.get(), db.get(), N, C, eps,
                        cstream());
      std::vector<double> ref(nc), rm(static_cast<size_t>(N)), rr(static_cast<size_t>(N));
      cpu::layernorm_forward<double>(ref.data(), rm.data(), rr.data(), to_double(x).data(),
                                     to_double(w).data(), to_double(b).data(), N, C, double(eps));
      t.add("layernorm_forward", shape, "out", out.download(), ref, bf16_tol(ref));
      t.add("layernorm_forward", shape, "mean", mean.download(), rm, 1e-6);
      t.add("layernorm_forward", shape, "rstd", rstd.download(), rr, 1e-5);

      Buf<float> gx(nc), gw(static_cast<size_t>(C)), gb(static_cast<size_t>(C));
      layernorm_backward(gx.get(), gw.get(), gb.get(), ddout.bf(), dx.get(), mean.get(),
                         rstd.get(), dw.get(), N, C, cstream());
      // The backward reads the statistics the forward saved, as in training.
      const std::vector<double> m = mean.download(), r = rstd.download();
      std::vector<double> rx(nc), rw(static_cast<size_t>(C)), rb(static_cast<size_t>(C));
      cpu::layernorm_backward<double>(rx.data(), rw.data(), rb.data(), bf16_rounded(dout).data(),
                                      to_double(x).data(), m.data(), r.data(),
                                      to_double(w).data(), N, C);
      t.add("layernorm_backward", shape, "dx", gx.download(), rx, 1e-5);
      t.add("layernorm_backward", shape, "dweight", gw.download(), rw, 1e-5);
      t.add("layernorm_backward", shape, "dbias", gb.download(), rb, 1e-5);

      // The block's fused form: the f32 stream plus a bf16 branch, then the norm of the sum.
      const std::vector<float> branch = randn(rng, nc);
      Buf<bf16> dbranch(to_bf16(branch));
      Buf<float> sum(nc);
      residual_layernorm_forward(sum.get(), out.bf(), mean.get(), rstd.get(), dx.get(),
                                 dbranch.bf(), dw.get(), db.get(), N, C, eps, cstream());
      const std::vector<double> rbr = bf16_rounded(branch);
      std::vector<double> rs(nc);
      for (size_t i = 0; i < nc; ++i) rs[i] = double(float(double(x[i]) + rbr[i]));
      cpu::layernorm_forward<double>(ref.data(), rm.data(), rr.data(), rs.data(),
                                     to_double(w).data(), to_double(b).data(), N, C, double(eps));
      t.add("residual_layernorm_forward", shape, "sum", sum.download(), rs, 0.0);
      t.add("residual_layernorm_forward", shape, "out", out.download(), ref, bf16_tol(ref));
      t.add("residual_layernorm_forward", shape, "rstd", rstd.download(), rr, 1e-5);
    });
  }
}

void check_gemm(Table& t, Rng& rng) {
  const int shapes[][3] = {{197, 33, 37}, {394, 384, 1536}};  // rows, in, out
  for (const auto& s : shapes) {
    const int rows = s[0], in = s[1], out = s[2];
    const std::string shape = str_cat("rows=", rows, " in=", in, " out=", out);
    t.run("gemm", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(rows) * in),
                               w = randn(rng, size_t(out) * in, 0.05),
                               b = randn(rng, size_t(out), 0.5),
                               dy = randn(rng, size_t(rows) * out);
      Buf<bf16> dx(to_bf16(x)), dw(to_bf16(w)), db(to_bf16(b)), ddy(to_bf16(dy)),
          y(size_t(rows) * out);
      const std::vector<double> xr = bf16_rounded(x), wr = bf16_rounded(w), br = bf16_rounded(b),
                                dyr = bf16_rounded(dy);
      gemm(y.get(), true, dx.bf(), dw.bf(), db.get(), GemmEpilogue::bias, rows, out, in, false,
           true, 1, 0, 0, 0, cstream());
      std::vector<double> ry(size_t(rows) * out);
      cpu::gemm<double>(ry.data(), xr.data(), wr.data(), rows, out, in, false, true, 1.0, 0.0);
      for (size_t i = 0; i < ry.size(); ++i) ry[i] += br[i % size_t(out)];
      t.add("gemm (y = x W^T + b)", shape, "y", y.download(), ry, bf16_tol(ry));

      Buf<float> gx(size_t(rows) * in), gw(size_t(out) * in), gb(static_cast<size_t>(out));
      gemm(gx.get(), false, ddy.bf(), dw.bf(), nullptr, GemmEpilogue::none, rows, in, out, false,
           false, 1, 0, 0, 0, cstream());
      std::vector<double> rx(size_t(rows) * in);
      cpu::gemm<double>(rx.data(), dyr.data(), wr.data(), rows, in, out, false, false, 1.0, 0.0);
      t.add("gemm (dx = dy W)", shape, "dx", gx.download(), rx, 1e-5);

      gemm(gw.get(), false, ddy.bf(), dx.bf(), gb.get(), GemmEpilogue::bias_grad, out, in, rows,
           true, false, 1, 0, 0, 0, cstream());
      std::vector<double> rw(size_t(out) * in), rb(size_t(out), 0.0);
      cpu::gemm<double>(rw.data(), dyr.data(), xr.data(), out, in, rows, true, false, 1.0, 0.0);
      for (size_t r = 0; r < size_t(rows); ++r)
        for (size_t o = 0; o < size_t(out); ++o) rb[o] += dyr[r * out + o];
      t.add("gemm (dW = dy^T x)", shape, "dW", gw.download(), rw, 1e-5);
      t.add("gemm (dW = dy^T x)", shape, "db", gb.download(), rb, 1e-5);
    });
  }
}

void check_attention(Table& t, Rng& rng) {
  const int shapes[][4] = {{2, 37, 3, 64}, {1, 197, 2, 64}, {1, 130, 1, 128}};  // B, N, H, Dh
  for (const auto& s : shapes) {
    const int B = s[0], N = s[1], H = s[2], D = s[3];
    const std::string shape = str_cat("B=", B, " N=", N, " H=", H, " Dh=", D);
    t.run("attention", shape, [&] {
      const size_t n_qkv = size_t(B) * N * 3 * H * D, n_out = size_t(B) * N * H * D,
                   n_lse = size_t(B) * H * N;
      const std::vector<float> qkv = randn(rng, n_qkv, 1.5), dout = randn(rng, n_out);
      Buf<bf16> dq(to_bf16(qkv)), out(n_out), ddout(to_bf16(dout)), dqkv(n_qkv);
      Buf<float> lse(n_lse);
      attention_forward(out.bf(), lse.get(), dq.bf(), B, N, H, D, cstream());
      attention_backward(dqkv.bf(), ddout.bf(), dq.bf(), out.bf(), lse.get(), B, N, H, D,
                         cstream());
      const std::vector<double> qr = bf16_rounded(qkv), dr = bf16_rounded(dout);
      std::vector<double> ro(n_out), rl(n_lse), rd(n_qkv), co, cd;
      cpu::attention_forward<double>(ro.data(), rl.data(), nullptr, qr.data(), B, N, H, D);
      cpu::attention_backward<double>(rd.data(), dr.data(), qr.data(), ro.data(), rl.data(), B, N,
                                      H, D);
      attention_bf16_composite(co, cd, qr, dr, B, N, H, D);
      // Twice the plain bf16 composite's error plus 1e-3, as tests/cuda/test_attention.cpp.
      t.add("attention_forward", shape, "out", out.download(), ro,
            2 * compare(co, ro).rel_l2 + 1e-3);
      t.add("attention_forward", shape, "lse", lse.download(), rl, 1e-5);
      t.add("attention_backward", shape, "dqkv", dqkv.download(), rd,
            2 * compare(cd, rd).rel_l2 + 1e-3);
    });
  }
}

void check_dino_loss(Table& t, Rng& rng) {
  const int shapes[][4] = {{2, 10, 9, 4097}, {2, 6, 2, 65536}};  // G, V, B, K
  const double tau_s = 0.1, tau_t = 0.04;
  for (const auto& s : shapes) {
    const int G = s[0], V = s[1], B = s[2], K = s[3];
    const std::string shape = str_cat("G=", G, " V=", V, " B=", B, " K=", K);
    t.run("dino_loss", shape, [&] {
      const size_t ns = size_t(V) * B * K, nt = size_t(G) * B * K;
      const std::vector<float> st = cosines(rng, ns), te = cosines(rng, nt);
      const std::vector<float> c = randn(rng, size_t(K), 0.1);
      Buf<float> ds(st), dt(te), dc(c), loss(1), grad(ns), colsum(static_cast<size_t>(K));
      dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(), dc.get(),
                                 G, V, B, K, float(tau_s), float(tau_t), cstream());
      std::vector<double> q(nt), rg(ns), rc(size_t(K), 0.0);
      const double rl = cpu::dino_loss_forward<double>(q.data(), to_double(st).data(),
                                                       to_double(te).data(), to_double(c).data(),
                                                       G, V, B, K, tau_s, tau_t);
      cpu::dino_loss_backward<double>(rg.data(), to_double(st).data(), q.data(), G, V, B, K,
                                      tau_s, 1.0);
      for (size_t r = 0; r < size_t(G) * B; ++r)
        for (size_t k = 0; k < size_t(K); ++k) rc[k] += te[r * K + k];
      t.add("dino_loss_forward_backward", shape, "loss", loss.download(), {rl}, 1e-5);
      t.add("dino_loss_forward_backward", shape, "dstudent", grad.download(), rg, 1e-5);
      t.add("dino_loss_forward_backward", shape, "teacher_colsum", colsum.download(), rc, 1e-5);
    });
  }
}

// AdamW's first step from zero moments, EMA and norms over a ViT-block-like set of tensors
// packed back to back (misaligned: the scalar path) after one 16-byte-aligned large one.
void check_optimizer(Table& t, Rng& rng) {
  const std::vector<int64_t> sizes = {384 * 1536, 1536, 384, 33, 1, 1025};
  std::vector<int64_t> off;
  int64_t total = 0;
  for (const int64_t n : sizes) off.push_back(total), total += n;
  const std::string shape = str_cat(sizes.size(), " tensors, ", total, " elements");
  t.run("optimizer", shape, [&] {
    const size_t n = size_t(total);
    const std::vector<float> w = randn(rng, n, 0.1), g = randn(rng, n, 0.01),
                             s = randn(rng, n, 0.1);
    Buf<float> dw(w), dg(g), m(std::vector<float>(n, 0.f)), v(std::vector<float>(n, 0.f)), ds(s),
        teacher(w), norms(sizes.size());
    Buf<bf16> wb(n), tb(n);
    const double lr = 1e-3, wd = 0.04, momentum = 0.996;
    std::vector<AdamWTensor> ad;
    std::vector<EmaTensor> ed;
    std::vector<TensorSpan> nd;
    for (size_t i = 0; i < sizes.size(); ++i) {
      ad.push_back({dw.get() + off[i], dg.get() + off[i], m.get() + off[i], v.get() + off[i],
                    wb.bf() + off[i], sizes[i], lr, wd, 1, 0});
      ed.push_back({teacher.get() + off[i], ds.get() + off[i], tb.bf() + off[i], sizes[i]});
      nd.push_back({dg.get() + off[i], sizes[i]});
    }
    Buf<AdamWTensor> dad(ad);
    Buf<EmaTensor> ded(ed);
    Buf<TensorSpan> dnd(nd);
    adamw_step(dad.get(), int(ad.size()), 0.9, 0.999, 1e-8, cstream());
    ema_update(ded.get(), int(ed.size()), momentum, cstream());
    grad_norms(norms.get(), dnd.get(), int(nd.size()), cstream());

    // core/optim.cpp's first step: m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001.
    std::vector<double> rw(n), rm(n), rv(n), rt(n), rn(sizes.size(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      const double gi = g[i];
      rm[i] = 0.1 * gi, rv[i] = 0.001 * gi * gi;
      const double denom = std::sqrt(rv[i]) / std::sqrt(0.001) + 1e-8;
      rw[i] = double(w[i]) * (1 - lr * wd) - lr / 0.1 * rm[i] / denom;
      rt[i] = momentum * w[i] + (1 - momentum) * s[i];
    }
    for (size_t k = 0; k < sizes.size(); ++k) {
      for (int64_t i = 0; i < sizes[k]; ++i) {
        const double gi = g[size_t(off[k] + i)];
        rn[k] += gi * gi;
      }
      rn[k] = std::sqrt(rn[k]);
    }
    const std::vector<double> gw = dw.download(), gt = teacher.download();
    t.add("adamw_step", shape, "param", gw, rw, 1e-6);
    t.add("adamw_step", shape, "exp_avg", m.download(), rm, 1e-6);
    t.add("adamw_step", shape, "exp_avg_sq", v.download(), rv, 1e-6);
    std::vector<double> gw_b(n), gt_b(n);
    for (size_t i = 0; i < n; ++i)
      gw_b[i] = double(float(bf16(float(gw[i])))), gt_b[i] = double(float(bf16(float(gt[i]))));
    t.add("adamw_step", shape, "param_bf16", wb.download(), gw_b, 0.0);
    t.add("ema_update", shape, "teacher", gt, rt, 1e-6);
    t.add("ema_update", shape, "teacher_bf16", tb.download(), gt_b, 0.0);
    t.add("grad_norms", shape, "norms", norms.download(), rn, 1e-6);
  });
}

}  // namespace

std::vector<Row> run_all(uint64_t seed) {
  Rng rng(seed);
  std::vector<Row> rows;
  Table t{rows};
  check_layernorm(t, rng);
  check_gemm(t, rng);
  check_attention(t, rng);
  check_dino_loss(t, rng);
  check_optimizer(t, rng);
  check_elementwise(rows, seed);
  check_linear(rows, seed);
  check_nn(rows, seed);
  check_optimizer_clip(rows, seed);
  return rows;
}

}  // namespace dino::kernels::cuda::selfcheck
