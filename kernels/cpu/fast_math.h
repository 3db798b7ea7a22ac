#pragma once
// Vectorisable float exp and erf for the elementwise CPU kernels. glibc's expf/erff are
// scalar calls (GELU alone spent a sixth of a training step in erff), while these are plain
// arithmetic the compiler turns into SIMD. Accuracy: exp within 2 ulp over the normal range;
// erf within 1.5e-7 absolute (Numerical Recipes' erfc Chebyshev fit, fractional error
// < 1.2e-7), which is at float32's own resolution for GELU's 0.5 * (1 + erf).
#include <cstdint>
#include <cstring>

namespace dino::kernels::cpu::fast {

inline float exp(float x) {
  // exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln 2 / 2, ln 2 split in two parts so
  // k * ln 2 is exact (Cody-Waite).
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^k into the exponent field, in unsigned arithmetic: shifting a negative int is undefined
  // in C++17, and so is converting a NaN to int (a NaN x gives a NaN p whatever k is); UBSan
  // reports both. The bits are the same as before for every finite x.
  uint32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += uint32_t(k == k ? int32_t(k) : 0) << 23;
  std::memcpy(&p, &bits, 4);
  return p;
}

inline float erf(float x) {
  const float z = x < 0 ? -x : x;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  const float erfc = t * fast::exp(-z * z - 1.26551223f + t * p);
  const float r = 1.0f - erfc;
  return x < 0 ? -r : r;
}

}  // namespace dino::kernels::cpu::fast
