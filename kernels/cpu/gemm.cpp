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
// beta == 0 assigns instead of scaling, so NaN in the old C cannot leak through.
#include "kernels/cpu/kernels.h"

#include <Eigen/Core>
#include <algorithm>

namespace dino::kernels::cpu {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using TileC = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MapIn = Eigen::Map<const RowMat<T>>;

template <class T, class OpA, class OpB>
void gemm_tile(TileC<T> c, const OpA& a, const OpB& b, T alpha, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

}  // namespace

template <class T>
void gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool trans_a,
          bool trans_b, T alpha, T beta) {
  constexpr int64_t kTile = 128;
  const MapIn<T> a(A, trans_a ? K : M, trans_a ? M : K);
  const MapIn<T> b(B, trans_b ? N : K, trans_b ? K : N);
  const int64_t tiles_m = (M + kTile - 1) / kTile, tiles_n = (N + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tiles_m * tiles_n; ++t) {
    const int64_t i0 = (t / tiles_n) * kTile, j0 = (t % tiles_n) * kTile;
    const int64_t m = std::min(kTile, M - i0), n = std::min(kTile, N - j0);
    TileC<T> c(C + i0 * N + j0, m, n, Eigen::OuterStride<>(N));
    // Rows i0.. of op(A) and columns j0.. of op(B), in each storage order.
    if (!trans_a && !trans_b)
      gemm_tile<T>(c, a.middleRows(i0, m), b.middleCols(j0, n), alpha, beta);
    else if (!trans_a && trans_b)
      gemm_tile<T>(c, a.middleRows(i0, m), b.middleRows(j0, n).transpose(), alpha, beta);
    else if (trans_a && !trans_b)
      gemm_tile<T>(c, a.middleCols(i0, m).transpose(), b.middleCols(j0, n), alpha, beta);
    else
      gemm_tile<T>(c, a.middleCols(i0, m).transpose(), b.middleRows(j0, n).transpose(), alpha,
                   beta);
  }
}

template void gemm<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                          bool, float, float);
template void gemm<double>(double*, const double*, const double*, int64_t, int64_t, int64_t,
                           bool, bool, double, double);

}  // namespace dino::kernels::cpu
