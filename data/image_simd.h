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

// Transposes the 8 x 8 matrix whose rows are m[0..7], in registers (the unpack / shuffle /
// lane-swap sequence of AVX; moves only, so values are unchanged).
inline void transpose(f8 (&m)[8]) {
  f8 pairs[8], quads[8];
  for (int i = 0; i < 8; i += 2) {  // rows i, i+1 interleaved: columns {0,1,4,5} and {2,3,6,7}
    pairs[i] = __builtin_shufflevector(m[i], m[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    pairs[i + 1] = __builtin_shufflevector(m[i], m[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)  // four rows' values of columns {0,4}, {1,5}, {2,6}, {3,7}
    for (int j = 0; j < 2; ++j) {
      quads[i + 2 * j] =
          __builtin_shufflevector(pairs[i + j], pairs[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      quads[i + 2 * j + 1] =
          __builtin_shufflevector(pairs[i + j], pairs[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int j = 0; j < 4; ++j) {  // rows 0-3 and 4-7 of column j, then of column j + 4
    m[j] = __builtin_shufflevector(quads[j], quads[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    m[j + 4] = __builtin_shufflevector(quads[j], quads[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

}  // namespace dino::data::simd
