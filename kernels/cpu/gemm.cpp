// C = alpha * op(A) @ op(B) + beta * C on row-major buffers, through Eigen.
//
// The buffers are mapped as row-major Eigen matrices in their stored shape and transposed
// as expressions, so no operand is copied.
//
// Determinism: Eigen's own OpenMP GEMM picks its K blocking from the thread count, so its
// float results change with OMP_NUM_THREADS once K exceeds a few hundred. Instead C is cut
// into a fixed grid of tiles that threads share out, and each tile is one single-threaded
// Eigen product (Eigen does not nest inside a parallel region), whose K blocking depends on
// K alone. Every element is thus summed in the same order whatever the thread count, and
// measured on 2 cores this is as fast as Eigen's own threading for the ViT's shapes.
//
// The tile grid depends on the shape alone. It is 128 x 128, halved (down to 64) while there
// are fewer than 4 tiles: a weight gradient (O, I) = dY^T X has a small output and a long K,
// and one 128 x 128 tile would leave the second core idle through the whole product. Each
// element's sum still runs over K in Eigen's order for that K.
//
// beta == 0 assigns instead of scaling, so NaN in the old C cannot leak through. A bias is
// written as each tile's starting value, so a Linear layer makes no extra pass over its output.
#include <Eigen/Core>
#include <algorithm>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using TileC = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MapIn = Eigen::Map<const RowMat<T>>;

// c = alpha * a b + (bias row broadcast, or beta * c); bias is the tile's slice or nullptr.
template <class T, class OpA, class OpB>
void gemm_tile(TileC<T> c, const OpA& a, const OpB& b, T alpha, T beta, const T* bias) {
  if (bias) {
    c.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, c.cols());
    c.noalias() += alpha * a * b;
  } else if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

struct TileGrid {
  int64_t tm, tn, tiles_m, tiles_n;
};

TileGrid tile_grid(int64_t M, int64_t N) {
  constexpr int64_t kTile = 128, kMinTile = 64, kMinTiles = 4;
  TileGrid g{kTile, kTile, 0, 0};
  for (;;) {
    g.tiles_m = (M + g.tm - 1) / g.tm;
    g.tiles_n = (N + g.tn - 1) / g.tn;
    if (g.tiles_m * g.tiles_n >= kMinTiles) return g;
    // A side is worth halving while the halved tile is still shorter than the dimension.
    if (g.tm / 2 >= kMinTile && M > g.tm / 2)
      g.tm /= 2;
    else if (g.tn / 2 >= kMinTile && N > g.tn / 2)
      g.tn /= 2;
    else
      return g;
  }
}

template <class T>
void tiled_gemm(T* C, const T* A, const T* B, const T* bias, int64_t M, int64_t N, int64_t K,
                bool trans_a, bool trans_b, T alpha, T beta) {
  const MapIn<T> a(A, trans_a ? K : M, trans_a ? M : K);
  const MapIn<T> b(B, trans_b ? N : K, trans_b ? K : N);
  const TileGrid g = tile_grid(M, N);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < g.tiles_m * g.tiles_n; ++t) {
    const int64_t i0 = (t / g.tiles_n) * g.tm, j0 = (t % g.tiles_n) * g.tn;
    const int64_t m = std::min(g.tm, M - i0), n = std::min(g.tn, N - j0);
    TileC<T> c(C + i0 * N + j0, m, n, Eigen::OuterStride<>(N));
    const T* tile_bias = bias ? bias + j0 : nullptr;
    // Rows i0.. of op(A) and columns j0.. of op(B), in each storage order.
    if (!trans_a && !trans_b)
      gemm_tile<T>(c, a.middleRows(i0, m), b.middleCols(j0, n), alpha, beta, tile_bias);
    else if (!trans_a && trans_b)
      gemm_tile<T>(c, a.middleRows(i0, m), b.middleRows(j0, n).transpose(), alpha, beta, tile_bias);
    else if (trans_a && !trans_b)
      gemm_tile<T>(c, a.middleCols(i0, m).transpose(), b.middleCols(j0, n), alpha, beta, tile_bias);
    else
      gemm_tile<T>(c, a.middleCols(i0, m).transpose(), b.middleRows(j0, n).transpose(), alpha, beta,
                   tile_bias);
  }
}

}  // namespace

template <class T>
void gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          T alpha, T beta) {
  tiled_gemm<T>(C, A, B, nullptr, M, N, K, trans_a, trans_b, alpha, beta);
}

template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* bias, int64_t R, int64_t I, int64_t O) {
  tiled_gemm<T>(y, x, w, bias, R, O, I, false, true, T(1), T(0));
}

template void gemm<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, bool,
                          float, float);
template void gemm<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool,
                           bool, double, double);
template void linear_forward<float>(float*, const float*, const float*, const float*, int64_t,
                                    int64_t, int64_t);
template void linear_forward<double>(double*, const double*, const double*, const double*, int64_t,
                                     int64_t, int64_t);

namespace {

// T* of a tensor, or nullptr when it is undefined (a missing bias).
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void CpuBackend::matmul(const Tensor& out, const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < nb; ++i)
      gemm<T>(out.data<T>() + i * M * N, a.data<T>() + i * M * K,
              b.data<T>() + (shared_b ? 0 : i * K * N), M, N, K, false, false, T(1), T(0));
  });
}

void CpuBackend::matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout,
                                 const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  dispatch_float("matmul", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* g = dout.data<T>();
    if (da.defined())  // da = g @ b^T
      for (int64_t i = 0; i < nb; ++i)
        gemm<T>(da.data<T>() + i * M * K, g + i * M * N, b.data<T>() + (shared_b ? 0 : i * K * N),
                M, K, N, false, true, T(1), T(0));
    if (!db.defined()) return;
    if (shared_b)  // the batch folds into the GEMM's inner dim: db = a^T @ g over all rows
      gemm<T>(db.data<T>(), a.data<T>(), g, K, N, nb * M, true, false, T(1), T(0));
    else
      for (int64_t i = 0; i < nb; ++i)
        gemm<T>(db.data<T>() + i * K * N, a.data<T>() + i * M * K, g + i * M * N, K, N, M, true,
                false, T(1), T(0));
  });
}

void CpuBackend::linear(const Tensor& out, const Tensor& x, const Tensor& weight,
                        const Tensor& bias) const {
  dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    linear_forward<T>(out.data<T>(), x.data<T>(), weight.data<T>(), data_or_null<T>(bias),
                      rows_of(x), cols_of(x), cols_of(out));
  });
}

void CpuBackend::linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                 const Tensor& dout, const Tensor& x, const Tensor& weight) const {
  const int64_t R = rows_of(x), I = cols_of(x), O = cols_of(dout);
  dispatch_float("linear", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (dx.defined())
      gemm<T>(dx.data<T>(), dout.data<T>(), weight.data<T>(), R, I, O, false, false, T(1), T(0));
    if (dweight.defined())
      gemm<T>(dweight.data<T>(), dout.data<T>(), x.data<T>(), O, I, R, true, false, T(1), T(0));
    // In double, whatever T: R can be every token of the batch.
    if (dbias.defined()) column_sums<double>(dbias.data<T>(), dout.data<T>(), R, O, true);
  });
}

}  // namespace dino::kernels::cpu
