#pragma once
// DINO's augmentations on the GPU, as the data layer calls them: a batch handed over as its
// samples' source images and drawn view parameters (the loader's CropFormat::sources)
// becomes the step's input, every view (B, C, S, S) f32 and normalised on the device,
// rendered by the CUDA backend's augment_views (core/kernel_table.def; kernels/cuda/augment.cu).
// For the same parameters the views equal the CPU path's (apply_view) to within a few float32
// rounding steps (tests/cuda/test_augment.cpp).
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/augment_params.h"
#include "data/image.h"

namespace dino::data {

// One batch before augmentation. Buffers are reused from one batch to the next.
struct SourceBatch {
  struct Sample {
    int height = 0, width = 0;
    bool f32 = false;  // floats in [0, 1] (SourceImage::f32) rather than bytes
    std::vector<uint8_t>
        bytes;  // channels x height x width values, planar (a float's 4 bytes each)
  };
  int batch = 0, channels = 0;
  std::vector<int> view_sizes;     // per view v: square side
  std::vector<Sample> samples;     // per sample
  std::vector<ViewParams> params;  // (batch, views) sample-major

  // Copies `src` (as a dataset loaded it) into sample i's buffer, reusing its memory.
  void set_source(int i, const SourceImage& src);
};

// What the GPU reads of a batch, packed into one buffer so one copy uploads it: each sample's
// placement (data/augment_params.h AugmentSource) and view parameters, then the sources, each
// 4-byte aligned. packed_sources_bytes checks the batch (sizes, every view's side and box
// inside its source) and returns the buffer's size; pack_sources writes it to `dst` (host
// memory of that size, e.g. pinned for an asynchronous upload).
size_t packed_sources_bytes(const SourceBatch& batch, const Normalization& norm);
void pack_sources(const SourceBatch& batch, void* dst);
// Renders every view of `batch` from its packed copy at `device_packed` (a CUDA buffer that
// pack_sources' bytes reach before the kernels queued on the context stream run): per view v
// a (batch, channels, S_v, S_v) f32 CUDA tensor, as render_views_cuda below.
std::vector<Tensor> render_packed_views_cuda(const SourceBatch& batch, const void* device_packed,
                                             const Normalization& norm);

// Checks the batch (sizes, every view's side and box inside its source), uploads it and
// renders every view on the GPU: per view v a (batch, channels, S_v, S_v) f32 CUDA tensor,
// normalised with `norm` (resolved for the channel count). Views of one size share one
// allocation (view-major), so each returned tensor is a free narrow() of it. Throws
// dino::Error naming the problem, or when the build has no CUDA backend.
std::vector<Tensor> render_views_cuda(const SourceBatch& batch, const Normalization& norm);

}  // namespace dino::data
