#pragma once
// Eight-float vectors (GCC/Clang vector extensions) for the image kernels of data/: one AVX
// register, two SSE ones. Each kernel keeps, per output value, the exact sequence of
// operations of the scalar formula it vectorises (the same taps in the same order), so the
// vector code and a scalar loop round identically; lanes only ever hold distinct outputs.
// Multiply-adds go through fma(): GCC contracts a scalar `acc += w * x` into one fused
// multiply-add where the machine has one, but not always the same vector chain (its Zen
// tuning splits 256-bit FMA chains), so the fusion is spelled out.
#include <cstring>
#ifdef __FMA__
#include <immintrin.h>
#endif

namespace dino::data::simd {

constexpr int kLanes = 8;
typedef float f8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32)));

inline f8 load(const float* p) {
  f8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, f8 v) { std::memcpy(p, &v, sizeof v); }
inline f8 splat(float x) { return f8{x, x, x, x, x, x, x, x}; }
inline f8 fma(f8 a, f8 b, f8 c) {  // a * b + c, rounded once where the machine fuses
#ifdef __FMA__
  return f8(_mm256_fmadd_ps(__m256(a), __m256(b), __m256(c)));
#else
  return a * b + c;
#endif
}
// std::min / std::max lane by lane (the same operand returned on ties, so signed zeros match).
inline f8 min(f8 a, f8 b) { return b < a ? b : a; }
inline f8 max(f8 a, f8 b) { return a < b ? b : a; }
inline f8 clamp01(f8 x) { return min(max(x, splat(0.f)), splat(1.f)); }

}  // namespace dino::data::simd
