#pragma once
// DINO's augmentations on the GPU (kernels/cuda/augment.cu): every view of a batch rendered
// from the samples' source bytes and their drawn parameters (data/augment_params.h), the
// same operations in the same order as the CPU reference (data/multicrop.h: apply_view). The
// data front end (data/augment_gpu.h) reaches it through the kernel table
// (CudaBackend::augment_views, at the end of augment.cu); tests and benchmarks call it here.
#include <cstdint>

#include "data/augment_params.h"

namespace dino::kernels::cuda {

// out (V, B, C, S, S) f32, view-major: view v of sample b at out + (v * B + b) * C * S * S
//   <- src (bytes; sample b's C x H_b x W_b planes at sources[b].offset), sources (B),
//      params (B, views_per_sample) sample-major: this call renders each sample's views
//      first_view .. first_view + V - 1, all of side S (their params' size must be S and
//      their boxes inside their source, which the front end checks).
// mean, std (C), host arrays: out = (x - mean[c]) * (1 / std[c]), x the augmented view in [0, 1].
// max_box_height (host): at least every rendered view's box height; it sizes the scratch.
// A view whose box is taller is written as NaN rather than read out of bounds.
// stream: the cudaStream_t, as void*. C is 1 or 3. Scratch comes from the stream-ordered pool.
void augment_views(float* out, const uint8_t* src, const data::AugmentSource* sources,
                   const data::ViewParams* params, int B, int views_per_sample, int first_view,
                   int V, int C, int S, int max_box_height, const float* mean, const float* std,
                   void* stream);

}  // namespace dino::kernels::cuda
