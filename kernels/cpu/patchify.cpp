// im2col for the patch-embedding conv (kernel = stride = P), so the conv becomes one GEMM
// against the (D, C*P*P) flattened weight. Patches do not overlap, so every pixel belongs to
// at most one column entry: col2im is a plain copy back, with no accumulation, and pixels
// outside the whole patches are set to zero.
#include <algorithm>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

// Patches are non-overlapping P x P squares in row-major patch order; pixels right or below
// the last whole patch are ignored (as Conv2d with stride P does). Gh = H / P, Gw = W / P.
// cols (B * Gh * Gw, C * P * P) <- img (B, C, H, W); a column is ordered (c, py, px), which is
// the layout of a Conv2d weight (D, C, P, P) flattened to (D, C*P*P).
template <class T>
void im2col_patches(T* cols, const T* img, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
  const int64_t Gh = H / P, Gw = W / P, L = C * P * P;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * Gh * Gw; ++r) {
    const int64_t b = r / (Gh * Gw), gy = (r / Gw) % Gh, gx = r % Gw;
    T* col = cols + r * L;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t py = 0; py < P; ++py) {
        const T* src = img + ((b * C + c) * H + gy * P + py) * W + gx * P;
        std::copy(src, src + P, col + (c * P + py) * P);
      }
  }
}

// dimg (B, C, H, W) <- dcols (B * Gh * Gw, C * P * P); ignored pixels get zero
// Split over (b, c) planes: each plane is written by one thread, with no overlap.
template <class T>
void col2im_patches(T* dimg, const T* dcols, int64_t B, int64_t C, int64_t H, int64_t W,
                    int64_t P) {
  const int64_t Gh = H / P, Gw = W / P, L = C * P * P;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < B * C; ++bc) {
    const int64_t b = bc / C, c = bc % C;
    T* plane = dimg + bc * H * W;
    std::fill(plane, plane + H * W, T(0));
    for (int64_t gy = 0; gy < Gh; ++gy)
      for (int64_t gx = 0; gx < Gw; ++gx) {
        const T* col = dcols + ((b * Gh + gy) * Gw + gx) * L + c * P * P;
        for (int64_t py = 0; py < P; ++py)
          std::copy(col + py * P, col + (py + 1) * P, plane + (gy * P + py) * W + gx * P);
      }
  }
}

}  // namespace

void CpuBackend::im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const {
  dispatch_float("patchify", img.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::im2col_patches<T>(cols.data<T>(), img.data<T>(), img.size(0), img.size(1), img.size(2),
                           img.size(3), P);
  });
}

void CpuBackend::col2im_patches(const Tensor& dimg, const Tensor& dcols, int64_t P) const {
  dispatch_float("patchify", dcols.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::col2im_patches<T>(dimg.data<T>(), dcols.data<T>(), dimg.size(0), dimg.size(1),
                           dimg.size(2), dimg.size(3), P);
  });
}

}  // namespace dino::kernels::cpu
