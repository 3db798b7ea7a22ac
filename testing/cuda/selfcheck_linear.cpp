// `dino check` rows for the GEMM-backed ops' kernels (see selfcheck.h): the patch im2col,
// weight normalisation forward and backward, and the two cuBLASLt configurations the ops use
// beyond check_gemm's Linear products: an fp32-output GEMM with an f32 bias (patchify) and a
// strided batch with bf16 output (matmul). Same references and tolerances as
// tests/cuda/test_ops_linear.cpp and tests/cuda/test_gemm.cpp.
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


void check_im2col(Table& t, Rng& rng) {
  const int shapes[][5] = {{2, 3, 30, 29, 4}, {2, 3, 224, 224, 16}};  // B, C, H, W, P
  for (const auto& s : shapes) {
    const int B = s[0], C = s[1], H = s[2], W = s[3], P = s[4];
    const std::string shape = str_cat("B=", B, " C=", C, " ", H, "x", W, " P=", P);
    t.run("im2col_patches", shape, [&] {
      const std::vector<float> img = randn(rng, size_t(B) * C * H * W);
      const size_t n = size_t(B) * (H / P) * (W / P) * C * P * P;
      Buf<float> dimg(img);
      Buf<bf16> cols(n);
      im2col_patches(cols.bf(), dimg.get(), B, C, H, W, P, cstream());
      std::vector<double> ref(n);
      cpu::im2col_patches<double>(ref.data(), bf16_rounded(img).data(), B, C, H, W, P);
      t.add("im2col_patches", shape, "cols", cols.download(), ref, 0.0);  // a gather: exact
    });
  }
}

void check_weight_norm(Table& t, Rng& rng) {
  const int shapes[][2] = {{65, 33}, {4096, 256}};  // K, C
  for (const auto& s : shapes) {
    const int K = s[0], C = s[1];
    const std::string shape = str_cat("K=", K, " C=", C);
    t.run("weight_norm", shape, [&] {
      const size_t kc = size_t(K) * C;
      const std::vector<float> v = randn(rng, kc), g = randn(rng, size_t(K), 0.5, 1.0),
                               dw = randn(rng, kc);
      Buf<float> dv(v), dg(g), ddw(dw), w(kc), vnorm(static_cast<size_t>(K)), gv(kc),
          gg(static_cast<size_t>(K));
      Buf<bf16> wb(kc);
      weight_norm_forward(w.get(), wb.bf(), vnorm.get(), dv.get(), dg.get(), K, C, cstream());
      weight_norm_backward(gv.get(), gg.get(), ddw.get(), dv.get(), dg.get(), vnorm.get(), K, C,
                           cstream());
      std::vector<double> rw(kc), rn(static_cast<size_t>(K)), rv(kc), rg(static_cast<size_t>(K));
      const std::vector<double> vd = to_double(v), gd = to_double(g);
      cpu::weight_norm_forward<double>(rw.data(), rn.data(), vd.data(), gd.data(), K, C);
      cpu::weight_norm_backward<double>(rv.data(), rg.data(), to_double(dw).data(), vd.data(),
                                        gd.data(), rn.data(), K, C);
      t.add("weight_norm_forward", shape, "w", w.download(), rw, 1e-5);
      t.add("weight_norm_forward", shape, "w_bf16", wb.download(), rw, bf16_tol(rw));
      t.add("weight_norm_forward", shape, "vnorm", vnorm.download(), rn, 1e-6);
      t.add("weight_norm_backward", shape, "dv", gv.download(), rv, 1e-5);
      t.add("weight_norm_backward", shape, "dg", gg.download(), rg, 1e-5);
    });
  }
}

// y (rows, out) f32 = x W^T + b with an f32 bias: the patch embedding's product.
void check_gemm_f32_bias(Table& t, Rng& rng) {
  const int shapes[][3] = {{37, 33, 65}, {392, 768, 384}};  // rows, in, out
  for (const auto& s : shapes) {
    const int rows = s[0], in = s[1], out = s[2];
    const std::string shape = str_cat("rows=", rows, " in=", in, " out=", out);
    t.run("gemm (f32 out + f32 bias)", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(rows) * in),
                               w = randn(rng, size_t(out) * in, 0.05),
                               b = randn(rng, size_t(out), 0.5);
      Buf<bf16> dx(to_bf16(x)), dw(to_bf16(w));
      Buf<float> db(b), y(size_t(rows) * out);
      gemm(y.get(), false, dx.bf(), dw.bf(), db.get(), GemmEpilogue::bias, rows, out, in, false,
           true, 1, 0, 0, 0, cstream());
      std::vector<double> ry(size_t(rows) * out);
      cpu::gemm<double>(ry.data(), bf16_rounded(x).data(), bf16_rounded(w).data(), rows, out, in, false,
                        true, 1.0, 0.0);
      for (size_t i = 0; i < ry.size(); ++i) ry[i] += b[i % size_t(out)];
      t.add("gemm (f32 out + f32 bias)", shape, "y", y.download(), ry, 1e-5);
    });
  }
}

// C (batch, M, N) bf16 = A (batch, M, K) @ B (batch, K, N): matmul's strided batch.
void check_gemm_batched(Table& t, Rng& rng) {
  const int shapes[][4] = {{3, 37, 65, 33}, {12, 197, 197, 64}};  // batch, M, N, K
  for (const auto& s : shapes) {
    const int batch = s[0], M = s[1], N = s[2], K = s[3];
    const std::string shape = str_cat("batch=", batch, " M=", M, " N=", N, " K=", K);
    t.run("gemm (batched, bf16 out)", shape, [&] {
      const std::vector<float> a = randn(rng, size_t(batch) * M * K),
                               b = randn(rng, size_t(batch) * K * N);
      Buf<bf16> da(to_bf16(a)), db(to_bf16(b)), c(size_t(batch) * M * N);
      gemm(c.get(), true, da.bf(), db.bf(), nullptr, GemmEpilogue::none, M, N, K, false, false,
           batch, int64_t(M) * K, int64_t(K) * N, int64_t(M) * N, cstream());
      const std::vector<double> ar = bf16_rounded(a), br = bf16_rounded(b);
      std::vector<double> rc(size_t(batch) * M * N);
      for (int i = 0; i < batch; ++i)
        cpu::gemm<double>(rc.data() + size_t(i) * M * N, ar.data() + size_t(i) * M * K,
                          br.data() + size_t(i) * K * N, M, N, K, false, false, 1.0, 0.0);
      t.add("gemm (batched, bf16 out)", shape, "C", c.download(), rc, bf16_tol(rc));
    });
  }
}

}  // namespace

void check_linear(std::vector<Row>& rows, uint64_t seed) {
  Rng rng(seed);
  Table t{rows};
  check_im2col(t, rng);
  check_weight_norm(t, rng);
  check_gemm_f32_bias(t, rng);
  check_gemm_batched(t, rng);
}

}  // namespace dino::kernels::cuda::selfcheck
