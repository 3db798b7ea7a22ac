#pragma once
// A small, fully serialisable random generator (xoshiro256**, seeded through splitmix64).
// Its whole state is four 64-bit words, so checkpoints can store it and a resumed run draws
// the same numbers. Streams derived from (seed, a, b, ...) give each sample its own
// randomness, independent of thread scheduling: Rng::derive(seed, epoch, index).
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace dino {

class Rng {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Rng(uint64_t seed = 0) { reseed(seed); }

  // A generator whose stream depends only on the given words (order matters).
  static Rng derive(std::initializer_list<uint64_t> words) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint64_t w : words) h = splitmix(h ^ splitmix(w + 0x632be59bd9b4e019ull));
    return Rng(h);
  }

  void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& s : s_) {
      x += 0x9e3779b97f4a7c15ull;
      s = splitmix(x);
    }
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n ? next_u64() % n : 0; }
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal by Box-Muller (one value per call, so the stream position is simple).
  double normal() {
    double u1 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  const State& state() const { return s_; }
  void set_state(const State& s) { s_ = s; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  State s_{};
};

}  // namespace dino
