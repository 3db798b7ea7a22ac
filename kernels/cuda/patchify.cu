// The patch embedding's im2col on the GPU: the strided Conv2d (kernel = stride = P) of a ViT
// becomes one GEMM of the (B*Gh*Gw, C*P*P) patch matrix against the (D, C*P*P) flattened
// weight (core/ops_linear.cpp, patchify). Patches do not overlap, so im2col is a pure gather:
// every output element reads one pixel; pixels outside the whole patches (H, W not multiples
// of P) are never read, as on the CPU (kernels/cpu/patchify.cpp).
//
// The images come in as the f32 batch and the GEMM reads bf16, so the gather also rounds:
// one pass reads the image (4 bytes per element) and writes the bf16 patches (2 bytes), no
// arithmetic. One thread per output element in a grid-stride loop, consecutive threads
// along a patch row (P contiguous pixels) and consecutive output addresses: writes coalesce
// fully, reads in runs of P pixels. 64-bit element indices (B*C*H*W passes 2^31 for large
// batches of large images). No backward: images never need a gradient.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

// kernels

// cols (B*Gh*Gw, C*P*P) <- img (B, C, H, W); n = B*Gh*Gw*C*P*P
__global__ void im2col_patches_kernel(__nv_bfloat16* cols, const float* img, int64_t n, int C,
                                      int H, int W, int P, int Gh, int Gw) {
  const int64_t L = int64_t(C) * P * P;      // one patch row of cols
  const int64_t patches = int64_t(Gh) * Gw;  // patches per image
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / L;       // patch row: (b, gy, gx)
    const int l = int(i - r * L);  // (c, py, px) inside the patch
    const int c = l / (P * P), py = (l / P) % P, px = l % P;
    const int64_t b = r / patches;
    const int rr = int(r - b * patches);
    const int gy = rr / Gw, gx = rr % Gw;
    const int64_t src = ((b * C + c) * H + int64_t(gy) * P + py) * W + int64_t(gx) * P + px;
    cols[i] = __float2bfloat16_rn(img[src]);
  }
}

// launchers

void im2col_patches(__nv_bfloat16* cols, const float* img, int64_t B, int C, int H, int W, int P,
                    cudaStream_t stream) {
  DINO_CHECK(P > 0 && H >= P && W >= P && C > 0 && B >= 0, "[im2col_patches] bad sizes B=", B,
             " C=", C, " H=", H, " W=", W, " P=", P);
  const int Gh = H / P, Gw = W / P;
  const int64_t n = B * Gh * Gw * int64_t(C) * P * P;
  if (n == 0) return;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = int64_t(context().sm_count) * 16;
  im2col_patches_kernel<<<int(blocks < cap ? blocks : cap), threads, 0, stream>>>(cols, img, n, C,
                                                                                  H, W, P, Gh, Gw);
  CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const {
  DINO_CHECK(!img.requires_grad(),
             "[patchify] img requires grad, but on CUDA patchify computes "
             "no image gradient (images never need one): detach the images, or run on --device "
             "cpu");
  DINO_CHECK(cols.numel() > 0, "[patchify] empty batch ", shape_str(img.shape()),
             " is not supported on CUDA");
  cuda::im2col_patches(bf16_ptr(cols), f32_ptr(img), img.size(0),
                       as_int("patchify", img.size(1), "channels"),
                       as_int("patchify", img.size(2), "rows"),
                       as_int("patchify", img.size(3), "columns"), int(P), op_stream());
}

void CudaBackend::col2im_patches(const Tensor&, const Tensor&, int64_t) const {
  throw Error("[patchify] no image gradient on CUDA (images never need one)");
}

}  // namespace dino::kernels::cuda
