#pragma once
// Stand-in for CUPTI's activity API on the host emulator (tests/simt/README.md): the calls,
// types and fields benchmarks/device_trace.cpp uses, with CUPTI's names, so it compiles
// unchanged against either. The emulated device reports each kernel, GEMM, copy and memset it
// runs (dino::simt::TracedWork in cuda_runtime.h) and tests/simt/cupti_emu.cpp hands them back
// in the caller's buffers at a flush, as CUPTI does.
#include <cstddef>
#include <cstdint>

#define CUPTIAPI

typedef struct CUctx_st* CUcontext;

typedef enum {
  CUPTI_SUCCESS = 0,
  CUPTI_ERROR_INVALID_PARAMETER = 1,
  CUPTI_ERROR_MAX_LIMIT_REACHED = 12,
  CUPTI_ERROR_NOT_INITIALIZED = 15,
  CUPTI_ERROR_UNKNOWN = 999,
} CUptiResult;

typedef enum {
  CUPTI_ACTIVITY_KIND_INVALID = 0,
  CUPTI_ACTIVITY_KIND_MEMCPY = 1,
  CUPTI_ACTIVITY_KIND_MEMSET = 2,
  CUPTI_ACTIVITY_KIND_KERNEL = 3,
  CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL = 10,
} CUpti_ActivityKind;

typedef enum { CUPTI_ACTIVITY_FLAG_FLUSH_FORCED = 1 << 0 } CUpti_ActivityFlag;

typedef enum {
  CUPTI_ACTIVITY_MEMCPY_KIND_UNKNOWN = 0,
  CUPTI_ACTIVITY_MEMCPY_KIND_HTOD = 1,
  CUPTI_ACTIVITY_MEMCPY_KIND_DTOH = 2,
  CUPTI_ACTIVITY_MEMCPY_KIND_DTOD = 8,
} CUpti_ActivityMemcpyKind;

typedef struct {
  CUpti_ActivityKind kind;
} CUpti_Activity;

typedef struct {
  CUpti_ActivityKind kind;
  uint16_t registersPerThread;
  uint64_t start;
  uint64_t end;
  int32_t gridX, gridY, gridZ;
  int32_t blockX, blockY, blockZ;
  const char* name;
} CUpti_ActivityKernel10;

typedef struct {
  CUpti_ActivityKind kind;
  uint8_t copyKind;
  uint64_t bytes;
  uint64_t start;
  uint64_t end;
} CUpti_ActivityMemcpy6;

typedef struct {
  CUpti_ActivityKind kind;
  uint64_t bytes;
  uint64_t start;
  uint64_t end;
} CUpti_ActivityMemset4;

typedef void(CUPTIAPI* CUpti_BuffersCallbackRequestFunc)(uint8_t** buffer, size_t* size,
                                                         size_t* maxNumRecords);
typedef void(CUPTIAPI* CUpti_BuffersCallbackCompleteFunc)(CUcontext context, uint32_t streamId,
                                                          uint8_t* buffer, size_t size,
                                                          size_t validSize);

CUptiResult cuptiGetResultString(CUptiResult result, const char** str);
CUptiResult cuptiActivityRegisterCallbacks(CUpti_BuffersCallbackRequestFunc funcBufferRequested,
                                           CUpti_BuffersCallbackCompleteFunc funcBufferCompleted);
CUptiResult cuptiActivityEnable(CUpti_ActivityKind kind);
CUptiResult cuptiActivityDisable(CUpti_ActivityKind kind);
// Hands every record so far to the completion callback, in buffers from the request callback.
CUptiResult cuptiActivityFlushAll(uint32_t flag);
CUptiResult cuptiActivityGetNextRecord(uint8_t* buffer, size_t validBufferSizeBytes,
                                       CUpti_Activity** record);
CUptiResult cuptiActivityGetNumDroppedRecords(CUcontext context, uint32_t streamId,
                                              size_t* dropped);
