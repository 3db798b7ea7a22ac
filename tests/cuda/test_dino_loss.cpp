// The fused DINO loss launchers on the GPU against the CPU reference in float64 (ARCHITECTURE
// §4, §6), on the (G, V, B, K) and inputs of every dino_loss case of the op table
// (testing/op_cases_nn.cpp: G = 1, odd B and K, K not a multiple of the 1024-column chunk,
// K = 65536, a row larger than a block's shared memory, and K = 65537, the scalar path with more
// column-chunk partials per row than a warp has lanes), logits of cosine size (the teacher
// divides them by 0.04) and the case's f32 bound. What the op check
// (tests/cuda/test_op_table.cpp) cannot see: the teacher's column sums the center update reads,
// the center update itself, a collapsed batch's exact ln K. All float32 paths.
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
namespace tbl = dino::testing;
using namespace dino::test;

namespace {

struct LossShape {
  int G, V, B, K;
};
LossShape shape_of(const tbl::OpCase& c) {
  return {int(c.dims[0]), int(c.dims[1]), int(c.dims[2]), int(c.dims[3])};
}

}  // namespace

TEST_CASE("dino_loss_forward_backward matches the CPU reference", "[dino_loss]") {
  const double tau_s = 0.1, tau_t = 0.04;  // the cases' temperatures
  const auto cases = tbl::cases_of("dino_loss");
  REQUIRE(cases.size() >= 8);
  for (const tbl::OpCase* oc : cases) {
    const LossShape sh = shape_of(*oc);
    INFO(oc->name);
    dino::Rng rng(tbl::case_seed(*oc));
    const std::vector<std::vector<float>> in = tbl::case_values(*oc, rng);
    const std::vector<float>&s = in[0], &t = in[1], &c = in[2];
    const size_t ns = s.size(), nt = t.size();
    const double tol = oc->tol.f32;
    DeviceBuffer<float> ds(s), dt(t), dc(c), loss(1), grad(ns), colsum(size_t(sh.K)),
        temperature(std::vector<float>{float(tau_t)});
    loss.poison(), grad.poison(), colsum.poison();
    cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(),
                                   dc.get(), sh.G, sh.V, sh.B, sh.K, float(tau_s),
                                   temperature.get(), test_stream());

    std::vector<double> q(nt), ref_grad(ns);
    const double ref_loss =
        cpu::dino_loss_forward<double>(q.data(), to_double(s).data(), to_double(t).data(),
                                       to_double(c).data(), sh.G, sh.V, sh.B, sh.K, tau_s, tau_t);
    cpu::dino_loss_backward<double>(ref_grad.data(), to_double(s).data(), q.data(), sh.G, sh.V,
                                    sh.B, sh.K, tau_s, 1.0);
    std::vector<double> ref_colsum(size_t(sh.K), 0.0);
    for (size_t r = 0; r < size_t(sh.G) * sh.B; ++r)
      for (size_t k = 0; k < size_t(sh.K); ++k) ref_colsum[k] += t[r * sh.K + k];

    expect_close("loss", to_double(loss.download()), {ref_loss}, tol);
    expect_close("dstudent", to_double(grad.download()), ref_grad, tol);
    expect_close("teacher_colsum", to_double(colsum.download()), ref_colsum, tol);

    // Fixed-order reductions: a second run is bit-identical.
    const std::vector<float> first_loss = loss.download(), first_grad = grad.download();
    cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(),
                                   dc.get(), sh.G, sh.V, sh.B, sh.K, float(tau_s),
                                   temperature.get(), test_stream());
    CHECK(loss.download() == first_loss);
    CHECK(grad.download() == first_grad);
  }
}

TEST_CASE("dino_loss: a collapsed (uniform) student and teacher give ln K", "[dino_loss]") {
  // Constant logits make every softmax uniform; the constants cancel between lse and the
  // cross term, leaving L = (1/(nB)) Σ_b Σ_v m_v ln K = ln K, since Σ_v m_v = n.
  const int G = 2, V = 4, B = 3, K = 4096;
  std::vector<float> s(size_t(V) * B * K, 0.25f), t(size_t(G) * B * K, -0.5f), c(size_t(K), 0.1f);
  DeviceBuffer<float> ds(s), dt(t), dc(c), loss(1), grad{s.size()}, colsum{size_t(K)},
      temperature(std::vector<float>{0.04f});
  loss.poison(), grad.poison(), colsum.poison();
  cu::dino_loss_forward_backward(loss.get(), grad.get(), colsum.get(), ds.get(), dt.get(), dc.get(),
                                 G, V, B, K, 0.1f, temperature.get(), test_stream());
  expect_close("loss", to_double(loss.download()), {std::log(double(K))}, 1e-5);
}

TEST_CASE("dino_center_update matches the CPU reference", "[dino_loss]") {
  // Each dino_loss case's K and teacher rows (G B of them).
  for (const tbl::OpCase* oc : tbl::cases_of("dino_loss")) {
    const int K = int(oc->dims[3]), R = int(oc->dims[0] * oc->dims[2]);
    INFO(oc->name << ": K = " << K << ", rows = " << R);
    dino::Rng rng(tbl::case_seed(*oc) + 32);
    const std::vector<std::vector<float>> in = tbl::case_values(*oc, rng);
    const std::vector<float>&t = in[1], &c = in[2];
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
