// kernels/cuda/gemm.cu's unfused bias epilogue, which runs where cuBLASLt's heuristic has no
// algorithm with the fused one: with the emulated heuristic refusing the bias epilogue, a
// product with a bias must equal the plain product (the same f32 sums) plus the bias added in
// f32 and rounded once to the output's type, bit for bit.
#include <cublasLt.h>

#include "kernels/cuda/kernels.h"
#include "tests/cuda/test_util.h"

namespace cu = dino::kernels::cuda;
using namespace dino::test;

namespace {

const __nv_bfloat16* bf(const DeviceBuffer<dino::bf16>& b) {
  return reinterpret_cast<const __nv_bfloat16*>(b.get());
}

// While alive, the emulated cuBLASLt has no algorithm with the bias epilogue.
struct NoFusedBias {
  NoFusedBias() { dino::simt::set_cublaslt_bias_epilogue(false); }
  ~NoFusedBias() { dino::simt::set_cublaslt_bias_epilogue(true); }
};

struct Problem {
  int64_t M, N, K;
  int batch;
  bool c_bf16;
};

// C = A (batch, M, K) @ B (batch, K, N) + bias (N) through gemm's unfused path, on the host.
std::vector<float> product_with_bias(const Problem& p, const DeviceBuffer<dino::bf16>& a,
                                     const DeviceBuffer<dino::bf16>& b,
                                     const std::vector<float>& bias) {
  const int64_t n = p.M * p.N * p.batch;
  const int64_t sa = p.batch > 1 ? p.M * p.K : 0, sb = p.batch > 1 ? p.K * p.N : 0,
                sc = p.batch > 1 ? p.M * p.N : 0;
  const NoFusedBias refuse;
  if (p.c_bf16) {
    DeviceBuffer<dino::bf16> c{size_t(n)}, db(to_bf16(bias));
    c.poison();
    cu::gemm(c.get(), true, bf(a), bf(b), db.get(), cu::GemmEpilogue::bias, p.M, p.N, p.K, false,
             false, p.batch, sa, sb, sc, test_stream());
    std::vector<float> out;
    for (const dino::bf16 v : c.download()) out.push_back(float(v));
    return out;
  }
  DeviceBuffer<float> c{size_t(n)}, db(bias);
  c.poison();
  cu::gemm(c.get(), false, bf(a), bf(b), db.get(), cu::GemmEpilogue::bias, p.M, p.N, p.K, false,
           false, p.batch, sa, sb, sc, test_stream());
  return c.download();
}

}  // namespace

TEST_CASE("gemm: the unfused bias epilogue equals the product plus the bias", "[gemm][simt]") {
  dino::Rng rng(48);
  // Shapes of their own: the heuristic's answers are cached per problem.
  for (const Problem p : {Problem{5, 33, 17, 1, true}, Problem{5, 33, 17, 1, false},
                          Problem{7, 24, 9, 3, true}, Problem{7, 24, 9, 3, false}}) {
    INFO("M = " << p.M << ", N = " << p.N << ", K = " << p.K << ", batch = " << p.batch
                << (p.c_bf16 ? ", bf16 out" : ", f32 out"));
    const int64_t n = p.M * p.N * p.batch;
    DeviceBuffer<dino::bf16> a(to_bf16(random_floats(rng, size_t(p.M * p.K * p.batch))));
    DeviceBuffer<dino::bf16> b(to_bf16(random_floats(rng, size_t(p.K * p.N * p.batch))));
    std::vector<float> bias = random_floats(rng, size_t(p.N), 0.5);
    if (p.c_bf16)
      for (float& v : bias) v = round_bf16(v);
    DeviceBuffer<float> plain{size_t(n)};
    plain.poison();
    cu::gemm(plain.get(), false, bf(a), bf(b), nullptr, cu::GemmEpilogue::none, p.M, p.N, p.K,
             false, false, p.batch, p.batch > 1 ? p.M * p.K : 0, p.batch > 1 ? p.K * p.N : 0,
             p.batch > 1 ? p.M * p.N : 0, test_stream());
    const std::vector<float> sums = plain.download();
    const std::vector<float> got = product_with_bias(p, a, b, bias);
    REQUIRE(got.size() == sums.size());
    for (size_t i = 0; i < sums.size(); ++i) {
      const float sum = sums[i] + bias[i % size_t(p.N)];
      const float want = p.c_bf16 ? round_bf16(sum) : sum;
      INFO("element " << i);
      REQUIRE(got[i] == want);
    }
  }
}
