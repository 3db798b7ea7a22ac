#pragma once
// Error checking for CUDA runtime, cuBLAS(Lt) and cuDNN calls (ARCHITECTURE §5). Every call goes
// through one of these macros, which throw dino::Error naming the call text, the file, the
// line and the library's error string; library code never calls exit().
//
// CUDNN_CHECK names cudnnGetErrorString, which is resolved where the macro is used, so only
// files that use it need <cudnn.h>.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.h"

#define CUDA_CHECK(call)                                                                          \
  do {                                                                                            \
    const cudaError_t dino_cuda_err_ = (call);                                                    \
    if (dino_cuda_err_ != cudaSuccess)                                                            \
      throw ::dino::Error(::dino::str_cat("[cuda] ", #call, " failed at ", __FILE__, ":",         \
                                          __LINE__, ": ", cudaGetErrorName(dino_cuda_err_), " (", \
                                          cudaGetErrorString(dino_cuda_err_), ")"));              \
  } while (0)

#define CUBLAS_CHECK(call)                                                                        \
  do {                                                                                            \
    const cublasStatus_t dino_cublas_st_ = (call);                                                \
    if (dino_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      throw ::dino::Error(::dino::str_cat("[cublas] ", #call, " failed at ", __FILE__, ":",       \
                                          __LINE__, ": ", cublasLtGetStatusName(dino_cublas_st_), \
                                          " (", cublasLtGetStatusString(dino_cublas_st_), ")"));  \
  } while (0)

#define CUDNN_CHECK(call)                                                                        \
  do {                                                                                           \
    const cudnnStatus_t dino_cudnn_st_ = (call);                                                 \
    if (dino_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                                  \
      throw ::dino::Error(::dino::str_cat("[cudnn] ", #call, " failed at ", __FILE__, ":",       \
                                          __LINE__, ": ", cudnnGetErrorString(dino_cudnn_st_))); \
  } while (0)
