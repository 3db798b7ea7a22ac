// See bf16_oracle.h.
#include "testing/bf16_oracle.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"

namespace dino::testing {

Comparison compare(const std::vector<double>& got, const std::vector<double>& ref) {
  Comparison c;
  DINO_CHECK(got.size() == ref.size(), "[check] compare: ", got.size(), " vs ", ref.size());
  double num = 0, den = 0, worst_abs = -1;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (c.non_finite++ == 0) worst_i = i, worst_abs = INFINITY;
      continue;
    }
    const double d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    if (std::fabs(d) > worst_abs) worst_abs = std::fabs(d), worst_i = i;
  }
  c.rel_l2 = c.non_finite ? NAN : std::sqrt(num / (den > 0 ? den : 1e-300));
  if (!got.empty())
    c.worst = str_cat("element ", worst_i, " of ", got.size(), ": got ", got[worst_i],
                      ", expected ", ref[worst_i]);
  return c;
}

double bf16_output_error(const std::vector<double>& ref) {
  std::vector<double> rounded(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) rounded[i] = double(float(bf16(float(ref[i]))));
  return compare(rounded, ref).rel_l2;
}

void attention_bf16_composite(std::vector<double>& out, std::vector<double>& dqkv,
                              const std::vector<double>& qkv, const std::vector<double>& dout,
                              int B, int N, int H, int D) {
  // S = bf16(q k^T), P = bf16(softmax(S * scale)), out = bf16(P v); backward dV = bf16(P^T dO),
  // dP = bf16(dO v^T), dS = bf16(P (dP - rowsum(dO out))), dQ = bf16(scale dS k),
  // dK = bf16(scale dS^T q).
  auto rb = [](double x) { return double(float(bf16(float(x)))); };
  const size_t row = size_t(3) * H * D, orow = size_t(H) * D;
  const double scale = 1.0 / std::sqrt(double(D));
  out.assign(size_t(B) * N * orow, 0.0);
  dqkv.assign(size_t(B) * N * row, 0.0);
  std::vector<double> P(size_t(N) * N), dS(size_t(N) * N), srow(static_cast<size_t>(N));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      auto q = [&](int i, int d) { return qkv[(size_t(b) * N + i) * row + h * D + d]; };
      auto k = [&](int j, int d) { return qkv[(size_t(b) * N + j) * row + (H + h) * D + d]; };
      auto v = [&](int j, int d) { return qkv[(size_t(b) * N + j) * row + (2 * H + h) * D + d]; };
      auto go = [&](int i, int d) { return dout[(size_t(b) * N + i) * orow + h * D + d]; };
      for (int i = 0; i < N; ++i) {
        double mx = -INFINITY;
        for (int j = 0; j < N; ++j) {
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += q(i, d) * k(j, d);
          srow[j] = rb(acc) * scale;
          mx = std::max(mx, srow[j]);
        }
        double sum = 0;
        for (int j = 0; j < N; ++j) sum += std::exp(srow[j] - mx);
        for (int j = 0; j < N; ++j) P[size_t(i) * N + j] = rb(std::exp(srow[j] - mx) / sum);
        for (int d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j < N; ++j) acc += P[size_t(i) * N + j] * v(j, d);
          out[(size_t(b) * N + i) * orow + h * D + d] = rb(acc);
        }
      }
      for (int i = 0; i < N; ++i) {
        double Di = 0;
        for (int d = 0; d < D; ++d) Di += go(i, d) * out[(size_t(b) * N + i) * orow + h * D + d];
        for (int j = 0; j < N; ++j) {
          double dp = 0;
          for (int d = 0; d < D; ++d) dp += go(i, d) * v(j, d);
          dS[size_t(i) * N + j] = rb(P[size_t(i) * N + j] * (rb(dp) - Di));
        }
      }
      for (int d = 0; d < D; ++d) {
        for (int i = 0; i < N; ++i) {
          double dq = 0;
          for (int j = 0; j < N; ++j) dq += dS[size_t(i) * N + j] * k(j, d);
          dqkv[(size_t(b) * N + i) * row + h * D + d] = rb(scale * dq);
        }
        for (int j = 0; j < N; ++j) {
          double dk = 0, dv = 0;
          for (int i = 0; i < N; ++i) {
            dk += dS[size_t(i) * N + j] * q(i, d);
            dv += P[size_t(i) * N + j] * go(i, d);
          }
          dqkv[(size_t(b) * N + j) * row + (H + h) * D + d] = rb(scale * dk);
          dqkv[(size_t(b) * N + j) * row + (2 * H + h) * D + d] = rb(dv);
        }
      }
    }
  }
}

}  // namespace dino::testing
