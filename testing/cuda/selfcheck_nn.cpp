// `dino check` rows for the nn kernels (see selfcheck.h): softmax and log-softmax, l2-normalize,
// drop path, the bicubic resize and the DINO loss extras (q, the scaled gradient, the teacher
// statistics), each against its float64 CPU reference on fresh random inputs, outputs poisoned
// with NaN before the run. Tolerances as tests/cuda/test_ops_nn.cpp: float32 results 1e-5
// (statistics 1e-4), bf16 results twice the error of rounding the exact result plus 1e-4.
#include <cmath>
#include <functional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"
#include "testing/cuda/selfcheck_util.h"

namespace dino::kernels::cuda::selfcheck {

namespace {

void check_softmax(Table& t, Rng& rng) {
  struct S {
    int N, C;
    bool bf;
  };
  const S shapes[] = {{37, 33, false}, {197, 197, true}, {2, 65536, false}};
  for (const S s : shapes) {
    for (const bool log_space : {false, true}) {
      const std::string kernel = log_space ? "log_softmax" : "softmax";
      const std::string shape = str_cat("N=", s.N, " C=", s.C, s.bf ? " bf16" : " f32");
      t.run(kernel, shape, [&] {
        const size_t n = size_t(s.N) * s.C;
        const std::vector<float> x = randn(rng, n, 2.0), dout = randn(rng, n);
        const std::vector<double> xr = s.bf ? bf16_rounded(x) : to_double(x);
        const std::vector<double> dr = s.bf ? bf16_rounded(dout) : to_double(dout);
        std::vector<double> ry(n), rdx(n);
        if (log_space) {
          cpu::log_softmax_forward<double>(ry.data(), xr.data(), s.N, s.C);
          cpu::log_softmax_backward<double>(rdx.data(), dr.data(), ry.data(), s.N, s.C);
        } else {
          cpu::softmax_forward<double>(ry.data(), xr.data(), s.N, s.C);
          cpu::softmax_backward<double>(rdx.data(), dr.data(), ry.data(), s.N, s.C);
        }
        Buf<float> lse(static_cast<size_t>(s.N));
        std::vector<double> gy, gdx;
        if (s.bf) {
          Buf<bf16> dx(to_bf16(x)), dd(to_bf16(dout)), y(n), gx(n);
          if (log_space) {
            log_softmax_forward(y.bf(), lse.get(), dx.bf(), s.N, s.C, cstream());
            log_softmax_backward(gx.bf(), dd.bf(), dx.bf(), lse.get(), s.N, s.C, cstream());
          } else {
            softmax_forward(y.bf(), lse.get(), dx.bf(), s.N, s.C, cstream());
            softmax_backward(gx.bf(), dd.bf(), dx.bf(), lse.get(), s.N, s.C, cstream());
          }
          gy = y.download(), gdx = gx.download();
        } else {
          Buf<float> dx(x), dd(dout), y(n), gx(n);
          if (log_space) {
            log_softmax_forward(y.get(), lse.get(), dx.get(), s.N, s.C, cstream());
            log_softmax_backward(gx.get(), dd.get(), dx.get(), lse.get(), s.N, s.C, cstream());
          } else {
            softmax_forward(y.get(), lse.get(), dx.get(), s.N, s.C, cstream());
            softmax_backward(gx.get(), dd.get(), dx.get(), lse.get(), s.N, s.C, cstream());
          }
          gy = y.download(), gdx = gx.download();
        }
        t.add(kernel + "_forward", shape, "out", gy, ry, s.bf ? bf16_tol(ry) : 1e-5);
        t.add(kernel + "_backward", shape, "dx", gdx, rdx, s.bf ? bf16_tol(rdx) : 1e-5);
      });
    }
  }
}

void check_l2_normalize(Table& t, Rng& rng) {
  struct S {
    int N, C;
    bool bf;
  };
  const S shapes[] = {{37, 33, false}, {640, 256, true}};
  const double eps = 1e-12;
  for (const S s : shapes) {
    const std::string shape = str_cat("N=", s.N, " C=", s.C, s.bf ? " bf16" : " f32");
    t.run("l2_normalize", shape, [&] {
      const size_t n = size_t(s.N) * s.C;
      const std::vector<float> x = randn(rng, n, 0.5, 0.1), dout = randn(rng, n);
      const std::vector<double> xr = s.bf ? bf16_rounded(x) : to_double(x);
      const std::vector<double> dr = s.bf ? bf16_rounded(dout) : to_double(dout);
      std::vector<double> ry(n), rn(static_cast<size_t>(s.N)), rdx(n);
      cpu::l2_normalize_forward<double>(ry.data(), rn.data(), xr.data(), s.N, s.C, eps);
      cpu::l2_normalize_backward<double>(rdx.data(), dr.data(), xr.data(), rn.data(), s.N, s.C,
                                         eps);
      Buf<float> norm(static_cast<size_t>(s.N));
      std::vector<double> gy, gdx;
      if (s.bf) {
        Buf<bf16> dx(to_bf16(x)), dd(to_bf16(dout)), y(n), gx(n);
        l2_normalize_forward(y.bf(), norm.get(), dx.bf(), s.N, s.C, eps, cstream());
        l2_normalize_backward(gx.bf(), dd.bf(), dx.bf(), norm.get(), s.N, s.C, eps, cstream());
        gy = y.download(), gdx = gx.download();
      } else {
        Buf<float> dx(x), dd(dout), y(n), gx(n);
        l2_normalize_forward(y.get(), norm.get(), dx.get(), s.N, s.C, eps, cstream());
        l2_normalize_backward(gx.get(), dd.get(), dx.get(), norm.get(), s.N, s.C, eps, cstream());
        gy = y.download(), gdx = gx.download();
      }
      t.add("l2_normalize_forward", shape, "out", gy, ry, s.bf ? bf16_tol(ry) : 1e-5);
      t.add("l2_normalize_forward", shape, "norm", norm.download(), rn, 1e-5);
      t.add("l2_normalize_backward", shape, "dx", gdx, rdx, s.bf ? bf16_tol(rdx) : 1e-5);
    });
  }
}

void check_drop_path(Table& t, Rng& rng) {
  const int B = 37, S = 197 * 5;
  const double p = 0.1;
  for (const bool bf : {false, true}) {
    const std::string shape = str_cat("B=", B, " S=", S, bf ? " bf16" : " f32");
    t.run("drop_path", shape, [&] {
      const size_t n = size_t(B) * S;
      const std::vector<float> x = randn(rng, n);
      std::vector<uint8_t> keep(static_cast<size_t>(B));
      for (auto& k : keep) k = rng.bernoulli(1 - p) ? 1 : 0;
      const std::vector<double> xr = bf ? bf16_rounded(x) : to_double(x);
      std::vector<double> ref(n);
      for (size_t i = 0; i < n; ++i) ref[i] = keep[i / S] ? xr[i] / (1 - p) : 0.0;
      std::vector<double> got;
      if (bf) {
        Buf<bf16> dx(to_bf16(x)), out(n);
        drop_path_apply(out.bf(), dx.bf(), keep.data(), float(1 / (1 - p)), B, S, cstream());
        got = out.download();
      } else {
        Buf<float> dx(x), out(n);
        drop_path_apply(out.get(), dx.get(), keep.data(), float(1 / (1 - p)), B, S, cstream());
        got = out.download();
      }
      t.add("drop_path_apply", shape, "out", got, ref, bf ? bf16_tol(ref) : 1e-6);
    });
  }
}

void check_resize(Table& t, Rng& rng) {
  // DINO's interpolation of a 14x14 base grid to a 6x6 local-crop grid (scale (6 + 0.1) / 14)
  // and an upsampling 4x4 -> 7x7 with an odd channel count.
  struct S {
    int Hi, Wi, Ho, Wo, C;
    double sh, sw;
  };
  const S shapes[] = {{14, 14, 6, 6, 384, 6.1 / 14, 6.1 / 14}, {4, 4, 7, 7, 33, 7.1 / 4, 7.1 / 4}};
  for (const S s : shapes) {
    const std::string shape = str_cat(s.Hi, "x", s.Wi, " -> ", s.Ho, "x", s.Wo, " C=", s.C);
    t.run("bicubic_resize", shape, [&] {
      const size_t ni = size_t(s.Hi) * s.Wi * s.C, no = size_t(s.Ho) * s.Wo * s.C;
      const std::vector<float> in = randn(rng, ni), dout = randn(rng, no);
      Buf<float> din(in), ddout(dout), out(no), gin(ni);
      bicubic_resize_forward(out.get(), din.get(), s.Hi, s.Wi, s.Ho, s.Wo, s.C, s.sh, s.sw,
                             cstream());
      bicubic_resize_backward(gin.get(), ddout.get(), s.Hi, s.Wi, s.Ho, s.Wo, s.C, s.sh, s.sw,
                              cstream());
      std::vector<double> ro(no), rg(ni);
      cpu::bicubic_resize_forward<double>(ro.data(), to_double(in).data(), s.Hi, s.Wi, s.Ho, s.Wo,
                                          s.C, s.sh, s.sw);
      cpu::bicubic_resize_backward<double>(rg.data(), to_double(dout).data(), s.Hi, s.Wi, s.Ho,
                                           s.Wo, s.C, s.sh, s.sw);
      t.add("bicubic_resize_forward", shape, "out", out.download(), ro, 1e-5);
      t.add("bicubic_resize_backward", shape, "din", gin.download(), rg, 1e-5);
    });
  }
}

void check_dino_loss_extras(Table& t, Rng& rng) {
  const int G = 2, V = 10, B = 4, K = 4096;
  const double tau_s = 0.1, tau_t = 0.04, dloss = 0.37;
  const std::string shape = str_cat("G=", G, " V=", V, " B=", B, " K=", K);
  t.run("dino_loss extras", shape, [&] {
    const size_t ns = size_t(V) * B * K, nt = size_t(G) * B * K;
    const std::vector<float> st = cosines(rng, ns), te = cosines(rng, nt);
    const std::vector<float> c = randn(rng, size_t(K), 0.1);
    Buf<float> ds(st), dt(te), dc(c), loss(1), grad(ns), colsum(static_cast<size_t>(K)), q(nt),
        up(std::vector<float>{float(dloss)}), scaled(ns), stats(3);
    dino_loss_forward_backward_q(loss.get(), grad.get(), colsum.get(), q.get(), ds.get(), dt.get(),
                                 dc.get(), G, V, B, K, float(tau_s), float(tau_t), cstream());
    dino_loss_scale_grad(scaled.get(), grad.get(), up.get(), int64_t(ns), cstream());
    dino_teacher_stats(stats.get(), loss.get(), q.get(), G * B, K, cstream());

    std::vector<double> rq(nt), rg(ns);
    const double rl = cpu::dino_loss_forward<double>(rq.data(), to_double(st).data(),
                                                     to_double(te).data(), to_double(c).data(), G,
                                                     V, B, K, tau_s, tau_t);
    cpu::dino_loss_backward<double>(rg.data(), to_double(st).data(), rq.data(), G, V, B, K, tau_s,
                                    dloss);
    const int64_t R = int64_t(G) * B;
    double h = 0;
    std::vector<double> mean_q(static_cast<size_t>(K), 0.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = 0; k < K; ++k) {
        const double v = rq[size_t(r * K + k)];
        if (v > 0) h -= v * std::log(v);
        mean_q[size_t(k)] += v / double(R);
      }
    double hb = 0;
    for (const double v : mean_q)
      if (v > 0) hb -= v * std::log(v);
    t.add("dino_loss_forward_backward_q", shape, "q", q.download(), rq, 1e-5);
    t.add("dino_loss_scale_grad", shape, "dstudent * 0.37", scaled.download(), rg, 1e-5);
    const std::vector<double> gs = stats.download();
    t.add("dino_teacher_stats", shape, "loss", {gs[0]}, {rl}, 1e-5);
    t.add("dino_teacher_stats", shape, "teacher_entropy", {gs[1]}, {h / double(R)}, 1e-4);
    t.add("dino_teacher_stats", shape, "batch_entropy", {gs[2]}, {hb}, 1e-4);
  });
}

}  // namespace

void check_nn(std::vector<Row>& rows, uint64_t seed) {
  Rng rng(seed ^ 0x6e6e);  // "nn": a stream of its own, whatever the other families draw
  Table t{rows};
  check_softmax(t, rng);
  check_l2_normalize(t, rng);
  check_drop_path(t, rng);
  check_resize(t, rng);
  check_dino_loss_extras(t, rng);
}

}  // namespace dino::kernels::cuda::selfcheck
