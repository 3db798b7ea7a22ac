// `dino check` rows for the core ops' elementwise, reduction and data-movement kernels
// (elementwise.cu, reduce.cu, shape.cu; see selfcheck.h): a mixed-dtype broadcast add (the
// residual stream plus a bf16 branch under a position-embedding broadcast), a bf16 per-row
// multiply, exact-erf GELU forward and backward in bf16, the deterministic all-sum, the row
// sums and maxima, sum_to's tiled path (the position-embedding gradient), and the tiled
// transpose. Each against a float64 CPU reference on fresh random inputs, outputs poisoned
// with NaN before the run. Tolerances as tests/cuda/test_ops_elementwise.cpp: float32 results
// 1e-5, bf16 results twice the error of rounding the exact result plus 1e-4, data movement
// exact.
#include <cmath>
#include <functional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"
#include "testing/cuda/selfcheck_util.h"

namespace dino::kernels::cuda::selfcheck {

namespace {

double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_grad_ref(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) * 0.3989422804014327;
}

}  // namespace

void check_elementwise(std::vector<Row>& rows, uint64_t seed) {
  Table t{rows};
  Rng rng(seed * 7919 + 17);

  // x (B, N, D) f32 + branch (1, N, D) bf16 -> f32: the geometry the host collapses it to.
  {
    const int64_t B = 4, N = 197, D = 384, ND = N * D;
    const std::string shape = "(4, 197, 384) f32 + (1, 197, 384) bf16";
    t.run("broadcast_binary", shape, [&] {
      const std::vector<float> a = randn(rng, size_t(B * ND)), b = randn(rng, size_t(ND));
      Buf<float> da(a), out(size_t(B * ND));
      Buf<bf16> db(to_bf16(b));
      BroadcastGeom g;
      g.nd = 2;
      g.size[0] = B, g.size[1] = ND;
      g.stride_a[0] = ND, g.stride_a[1] = 1;
      g.stride_b[0] = 0, g.stride_b[1] = 1;
      broadcast_binary(out.get(), false, da.get(), false, db.get(), true, g, BinaryOp::add,
                       cstream());
      const std::vector<double> rb = bf16_rounded(b);
      std::vector<double> ref(size_t(B * ND));
      for (int64_t i = 0; i < B * ND; ++i) ref[size_t(i)] = double(a[size_t(i)]) + rb[size_t(i % ND)];
      t.add("broadcast_binary", shape, "out (add)", out.download(), ref, 1e-5);
    });
  }
  // bf16 (37, 33) * bf16 (37, 1) -> bf16
  {
    const int64_t R = 37, C = 33;
    const std::string shape = "(37, 33) bf16 * (37, 1) bf16";
    t.run("broadcast_binary", shape, [&] {
      const std::vector<float> a = randn(rng, size_t(R * C)), b = randn(rng, size_t(R));
      Buf<bf16> da(to_bf16(a)), db(to_bf16(b)), out(size_t(R * C));
      BroadcastGeom g;
      g.nd = 2;
      g.size[0] = R, g.size[1] = C;
      g.stride_a[0] = C, g.stride_a[1] = 1;
      g.stride_b[0] = 1, g.stride_b[1] = 0;
      broadcast_binary(out.get(), true, da.get(), true, db.get(), true, g, BinaryOp::mul,
                       cstream());
      const std::vector<double> ra = bf16_rounded(a), rb = bf16_rounded(b);
      std::vector<double> ref(size_t(R * C));
      for (int64_t i = 0; i < R * C; ++i) ref[size_t(i)] = ra[size_t(i)] * rb[size_t(i / C)];
      t.add("broadcast_binary", shape, "out (mul)", out.download(), ref, bf16_tol(ref));
    });
  }
  // GELU, bf16, the MLP's hidden size
  {
    const int64_t n = 197 * 1536;
    const std::string shape = "n=197*1536 bf16";
    t.run("unary gelu", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(n), 2.0), g = randn(rng, size_t(n));
      const size_t count = static_cast<size_t>(n);
      Buf<bf16> dx_in(to_bf16(x)), dg(to_bf16(g)), out(count), dx(count);
      unary_forward(out.get(), dx_in.get(), true, n, UnaryOp::gelu, 0.f, cstream());
      unary_backward(dx.get(), dg.get(), dx_in.get(), true, n, UnaryOp::gelu, 0.f, cstream());
      const std::vector<double> rx = bf16_rounded(x), rg = bf16_rounded(g);
      std::vector<double> ref(count), dref(count);
      for (size_t i = 0; i < size_t(n); ++i) {
        ref[i] = gelu_ref(rx[i]);
        dref[i] = rg[i] * gelu_grad_ref(rx[i]);
      }
      t.add("unary_forward", shape, "out (gelu)", out.download(), ref, bf16_tol(ref));
      t.add("unary_backward", shape, "dx (gelu)", dx.download(), dref, bf16_tol(dref));
    });
  }
  // The all-sum: many blocks' partials, f32 input, run twice (must be bit-identical).
  {
    const int64_t n = (int64_t(1) << 22) + 37;
    const std::string shape = "n=2^22+37 f32";
    t.run("sum_all", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(n), 1.0, 1.0);
      Buf<float> dx(x), out1(1), out2(1);
      sum_all(out1.get(), false, dx.get(), false, n, 1.f, cstream());
      sum_all(out2.get(), false, dx.get(), false, n, 1.f, cstream());
      double ref = 0;
      for (float v : x) ref += double(v);
      const std::vector<double> got1 = out1.download(), got2 = out2.download();
      t.add("sum_all", shape, "sum", got1, {ref}, 1e-5);
      t.add("sum_all", shape, "second run - first", {got2[0] - got1[0]}, {0.0}, 0.0);
    });
  }
  // Row reductions: bf16 sums, one warp per row; f32 maxima of wide rows, one block per row.
  {
    const int64_t R = 197, C = 384;
    const std::string shape = "R=197 C=384 bf16";
    t.run("reduce_rows", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(R * C));
      Buf<bf16> dx(to_bf16(x)), out(static_cast<size_t>(R));
      reduce_rows(out.get(), dx.get(), true, R, C, RowReduce::sum, float(C), cstream());
      const std::vector<double> rx = bf16_rounded(x);
      std::vector<double> ref(static_cast<size_t>(R), 0.0);
      for (int64_t i = 0; i < R * C; ++i) ref[size_t(i / C)] += rx[size_t(i)] / double(C);
      t.add("reduce_rows", shape, "mean", out.download(), ref, bf16_tol(ref));
    });
  }
  {
    const int64_t R = 3, C = 65536;
    const std::string shape = "R=3 C=65536 f32";
    t.run("reduce_rows", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(R * C));
      Buf<float> dx(x), out(static_cast<size_t>(R));
      reduce_rows(out.get(), dx.get(), false, R, C, RowReduce::max, 1.f, cstream());
      std::vector<double> ref(static_cast<size_t>(R), -INFINITY);
      for (int64_t i = 0; i < R * C; ++i)
        ref[size_t(i / C)] = std::max(ref[size_t(i / C)], double(x[size_t(i)]));
      t.add("reduce_rows", shape, "max", out.download(), ref, 0.0);
    });
  }
  // sum_to: the position-embedding gradient (8, 197, 384) -> (1, 197, 384), f32.
  {
    const int64_t B = 8, ND = 197 * 384;
    const std::string shape = "(8, 197, 384) -> (1, 197, 384) f32";
    t.run("sum_to_shape", shape, [&] {
      const std::vector<float> g = randn(rng, size_t(B * ND));
      Buf<float> dg(g), out(static_cast<size_t>(ND));
      SumToGeom geom;
      geom.keep.nd = 1, geom.keep.size[0] = ND, geom.keep.stride[0] = 1;
      geom.red.nd = 1, geom.red.size[0] = B, geom.red.stride[0] = ND;
      sum_to_shape(out.get(), dg.get(), false, geom, cstream());
      std::vector<double> ref(static_cast<size_t>(ND), 0.0);
      for (int64_t i = 0; i < B * ND; ++i) ref[size_t(i % ND)] += double(g[size_t(i)]);
      t.add("sum_to_shape", shape, "out", out.download(), ref, 1e-5);
    });
  }
  // permute: (2, 197, 384) -> (2, 384, 197), bf16, the tiled transpose (exact).
  {
    const int64_t B = 2, N = 197, D = 384;
    const std::string shape = "(2, 197, 384) [0,2,1] bf16";
    t.run("permute_elements", shape, [&] {
      const std::vector<float> x = randn(rng, size_t(B * N * D));
      Buf<bf16> dx(to_bf16(x)), out(size_t(B * N * D));
      const int64_t sh[3] = {B, N, D}, dims[3] = {0, 2, 1};
      permute_elements(out.get(), dx.get(), 2, sh, dims, 3, cstream());
      const std::vector<double> rx = bf16_rounded(x);
      std::vector<double> ref(size_t(B * N * D));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t d = 0; d < D; ++d)
            ref[size_t((b * D + d) * N + n)] = rx[size_t((b * N + n) * D + d)];
      t.add("permute_elements", shape, "out", out.download(), ref, 0.0);
    });
  }
}

}  // namespace dino::kernels::cuda::selfcheck
