#pragma once
// The per-device CUDA context (CUDA-side only; core code sees kernels/cuda/runtime.h).
// One per device, created lazily on first use and never destroyed (it lives as long as the
// process, like the CUDA primary context it sits on). It owns the one stream every launcher
// runs on by default, the memory-pool setup, the pinned staging blocks uploads go through,
// the lazily created cuBLASLt handle with its
// workspace, the cuBLASLt algorithm cache and the device properties kernels size themselves
// by (never hard-coded: ARCHITECTURE §5).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace dino::kernels::cuda {

// Everything that selects a cuBLASLt algorithm: sizes, transposes, output type, epilogue,
// batch shape and the operands' alignments (gemm.cu fills it).
using GemmKey = std::array<int64_t, 12>;

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  // Uploads of the next batch (train/batch_upload.h), ordered against `stream` by events.
  cudaStream_t copy_stream = nullptr;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int l2_bytes = 0;
  size_t smem_per_block_optin = 0;  // the most dynamic shared memory a block may opt into
  size_t total_global_mem = 0;

  static constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

  // Created on first call; throws dino::Error if cuBLASLt cannot be initialised.
  cublasLtHandle_t lt();
  void* lt_workspace() {
    lt();
    return lt_workspace_;
  }

  // Pinned host blocks that host-to-device copies stage through (runtime.cu, copy_h2d), each
  // with the event recorded after its last copy; guarded by staging_mutex.
  struct StagingBlock {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
  };
  std::vector<StagingBlock> staging;
  std::mutex staging_mutex;
  static constexpr size_t kMaxStagingBytes = size_t(2) << 30;

  // Heuristic-selected cuBLASLt algorithms, one per GemmKey (gemm.cu), guarded by gemm_mutex.
  std::map<GemmKey, cublasLtMatmulAlgo_t> gemm_algos;
  std::mutex gemm_mutex;

 private:
  std::mutex lt_mutex_;
  cublasLtHandle_t lt_ = nullptr;
  void* lt_workspace_ = nullptr;
};

// The context of the current device (cudaGetDevice), created on first use.
Context& context();

// The graph arena's side of alloc() and free() (kernels/cuda/graph.cu): a buffer from the arena
// of the capture in progress (nullptr when none is), and whether free() is handled there (an
// arena's buffer, or one freed while capturing, whose free waits for the capture's end).
void* arena_alloc(size_t bytes);
bool arena_free(void* p);

}  // namespace dino::kernels::cuda
