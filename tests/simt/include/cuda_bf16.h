#pragma once
// Emulated bf16 device types for host builds (tests/simt/README.md): round-to-nearest-even
// conversions, as the hardware's.
#include <cstdint>

#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t bits;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

__nv_bfloat16 __float2bfloat16_rn(float f);
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
float __bfloat162float(__nv_bfloat16 v);
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 v) {
  return {__bfloat162float(v.x), __bfloat162float(v.y)};
}
