// The fused DINO loss on the GPU against the CPU reference in float64 (ARCHITECTURE §4, §6).
// Logits are cosines in [-1, 1] as with norm_last_layer (the teacher divides them by 0.04,
// so scores reach ±25); sizes cover G = 1, odd B and K, K not a multiple of the 1024-column
// chunk, K = 65536 (a row larger than a block's shared memory) and K = 65537 (odd, so the
// scalar path, with more column-chunk partials per row than a warp has lanes). All float32
// paths.
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
using namespace dino::test;

namespace {

struct LossShape {
  int G, V, B, K;
};

std::vector<float> cosines(dino::Rng& rng, size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(rng.uniform(-1.0, 1.0));
  return v;
}

}  // namespace

TEST_CASE("dino_loss_forward_backward matches the CPU reference", "[dino_loss]") {
  dino::Rng rng(31);
  const LossShape shapes[] = {{1, 2, 1, 33},    {2, 2, 1, 33},    {2, 4, 3, 1000}, {3, 5, 37, 257},
                              {2, 10, 9, 4097}, {2, 6, 2, 65536}, {2, 3, 2, 65537}};
  const double tau_s = 0.1, tau_t = 0.04;
  for (const LossShape sh : shapes) {
    INFO("G = " << sh.G << ", V = " << sh.V << ", B = " << sh.B << ", K = " << sh.K);
    const size_t ns = size_t(sh.V) * sh.B * sh.K, nt = size_t(sh.G) * sh.B * sh.K;
    const std::vector<float> s = cosines(rng, ns), t = cosines(rng, nt);
    const std::vector<float> c = random_floats(rng, size_t(sh.K), 0.1);
    DeviceBuffer<float> ds(s), dt(t), dc(c), loss(1), grad(ns), colsum(size_t(sh.K));
    loss.poison(), grad.poison(), colsum.poison();
    cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(),
                                   dc.get(), sh.G, sh.V, sh.B, sh.K, float(tau_s), float(tau_t),
                                   test_stream());

    std::vector<double> q(nt), ref_grad(ns);
    const double ref_loss =
        cpu::dino_loss_forward<double>(q.data(), to_double(s).data(), to_double(t).data(),
                                       to_double(c).data(), sh.G, sh.V, sh.B, sh.K, tau_s, tau_t);
    cpu::dino_loss_backward<double>(ref_grad.data(), to_double(s).data(), q.data(), sh.G, sh.V,
                                    sh.B, sh.K, tau_s, 1.0);
    std::vector<double> ref_colsum(size_t(sh.K), 0.0);
    for (size_t r = 0; r < size_t(sh.G) * sh.B; ++r)
      for (size_t k = 0; k < size_t(sh.K); ++k) ref_colsum[k] += t[r * sh.K + k];

    expect_close("loss", to_double(loss.download()), {ref_loss}, 1e-5);
    expect_close("dstudent", to_double(grad.download()), ref_grad, 1e-5);
    expect_close("teacher_colsum", to_double(colsum.download()), ref_colsum, 1e-5);

    // Fixed-order reductions: a second run is bit-identical.
    const std::vector<float> first_loss = loss.download(), first_grad = grad.download();
    cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(),
                                   dc.get(), sh.G, sh.V, sh.B, sh.K, float(tau_s), float(tau_t),
                                   test_stream());
    CHECK(loss.download() == first_loss);
    CHECK(grad.download() == first_grad);
  }
}

TEST_CASE("dino_loss: a collapsed (uniform) student and teacher give ln K", "[dino_loss]") {
  // Constant logits make every softmax uniform; the constants cancel between lse and the
  // cross term, leaving L = (1/(nB)) Σ_b Σ_v m_v ln K = ln K, since Σ_v m_v = n.
  const int G = 2, V = 4, B = 3, K = 4096;
  std::vector<float> s(size_t(V) * B * K, 0.25f), t(size_t(G) * B * K, -0.5f), c(size_t(K), 0.1f);
  DeviceBuffer<float> ds(s), dt(t), dc(c), loss(1), grad{s.size()}, colsum{size_t(K)};
  loss.poison(), grad.poison(), colsum.poison();
  cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(), dc.get(),
                                 G, V, B, K, 0.1f, 0.04f, test_stream());
  expect_close("loss", to_double(loss.download()), {std::log(double(K))}, 1e-5);
}

TEST_CASE("dino_center_update matches the CPU reference", "[dino_loss]") {
  dino::Rng rng(32);
  for (int K : {1, 33, 65536}) {
    for (int R : {1, 37}) {
      INFO("K = " << K << ", rows = " << R);
      const std::vector<float> t = cosines(rng, size_t(R) * K);
      const std::vector<float> c = random_floats(rng, size_t(K), 0.1);
      std::vector<float> colsum(size_t(K), 0.f);
      std::vector<double> colsum_d(size_t(K), 0.0);
      for (size_t r = 0; r < size_t(R); ++r)
        for (size_t k = 0; k < size_t(K); ++k) colsum_d[k] += t[r * K + k];
      for (size_t k = 0; k < size_t(K); ++k) colsum[k] = float(colsum_d[k]);
      DeviceBuffer<float> dcenter(c), dcolsum(colsum);
      cu::dino_center_update(dcenter.get(), dcolsum.get(), R, K, 0.9f, test_stream());
      std::vector<double> ref = to_double(c);
      std::vector<double> ref_colsum(static_cast<size_t>(K));
      cpu::dino_teacher_colsum<double>(ref_colsum.data(), to_double(t).data(), R, K);
      cpu::dino_center_update<double>(ref.data(), ref_colsum.data(), R, K, 0.9);
      expect_close("center", to_double(dcenter.download()), ref, 1e-6);
    }
  }
}
