#pragma once
// What the communicator tests share: the world main() made, and per-rank random data that any
// rank can regenerate for any other rank (to compute the expected result of a collective).
#include "core/rng.h"
#include "core/tensor.h"
#include "dist/world.h"

namespace dino::test {

extern dist::World* g_world;

inline dist::Communicator& host_comm() { return *g_world->host(); }

// Rank r's data for test `tag`: n values, f32 or f64, from (tag, r) alone.
inline Tensor rank_data(uint64_t tag, int r, int64_t n, DType dtype) {
  Rng rng = Rng::derive({tag, uint64_t(r)});
  return Tensor::randn({n}, rng, 1.0, dtype);
}

}  // namespace dino::test
