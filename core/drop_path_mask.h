#pragma once
// Stochastic depth's keep decisions as a pure function of (the step's nonce, the call's index
// within the step, the sample's index in the global batch), the same on the host and in a
// kernel. Why not a generator the host advances: a step captured once in a CUDA graph
// (train/step_graph.h) replays the same launches, so the masks must come from something the
// device reads at run time (the nonce tensor, rewritten before each step) and not from the
// launch parameters. A sample's place in the global batch keys it, so a data-parallel step
// draws the masks one process draws (core/batch_shard.h).
#include <cstdint>

#if defined(__CUDACC__)
#define DINO_HOST_DEVICE __host__ __device__
#else
#define DINO_HOST_DEVICE
#endif

namespace dino {

// splitmix64's finaliser: a bijection of 64-bit words whose output bits each depend on every
// input bit.
DINO_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A sample is kept when 24 bits of its hash fall below this: floor((1 - p) 2^24), an integer,
// so every backend decides alike whatever its float precision.
inline uint32_t drop_path_threshold(double p) { return uint32_t((1.0 - p) * 16777216.0); }

DINO_HOST_DEVICE inline bool drop_path_keep(uint64_t nonce, uint32_t call, uint64_t sample,
                                            uint32_t threshold) {
  const uint64_t z = mix64(mix64(nonce ^ (0x9E3779B97F4A7C15ull * (uint64_t(call) + 1))) ^
                           (0xD1B54A32D192ED03ull * (sample + 1)));
  return uint32_t(z >> 40) < threshold;
}

// The nonce of a training step: every (seed, step) its own.
inline uint64_t drop_path_nonce(uint64_t seed, int64_t step) {
  return mix64(mix64(seed) ^ uint64_t(step));
}

}  // namespace dino
