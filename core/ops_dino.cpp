// The DINO loss as one fused op (DESIGN §4): the teacher's centred, sharpened softmax against
// the student's tempered log-softmax over every pair of different views, in one node.
#include "core/ops_util.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t, Tensor* q_out) {
  check_defined("dino_loss", student, "student");
  check_defined("dino_loss", teacher, "teacher");
  check_defined("dino_loss", center, "center");
  check_same("dino_loss", {&student, &teacher, &center});
  require_cpu("dino_loss", student);
  DINO_CHECK(student.dim() == 2 && teacher.dim() == 2, "[dino_loss] student and teacher must be "
             "(rows, K), got ", shape_str(student.shape()), " and ", shape_str(teacher.shape()));
  const int64_t K = student.size(1);
  DINO_CHECK(teacher.size(1) == K, "[dino_loss] teacher has ", teacher.size(1),
             " outputs, student ", K);
  DINO_CHECK(center.numel() == K, "[dino_loss] center has ", center.numel(),
             " elements, expected ", K);
  DINO_CHECK(G >= 1 && teacher.size(0) % G == 0, "[dino_loss] ", teacher.size(0),
             " teacher rows are not a multiple of ", G, " global views");
  const int64_t B = teacher.size(0) / G;
  DINO_CHECK(B >= 1 && student.size(0) % B == 0 && student.size(0) / B >= G,
             "[dino_loss] ", student.size(0), " student rows do not hold at least ", G,
             " views of batch ", B);
  const int64_t V = student.size(0) / B;
  DINO_CHECK(G * V - G > 0, "[dino_loss] no pair of different views (G = ", G, ", V = ", V, ")");
  DINO_CHECK(tau_s > 0 && tau_t > 0, "[dino_loss] temperatures must be positive");
  Tensor q = Tensor::empty({G * B, K}, student.dtype(), student.device());
  Tensor loss = Tensor::empty({}, student.dtype(), student.device());
  dispatch_float("dino_loss", student.dtype(), [&](auto tag) {
    using T = decltype(tag);
    *loss.data<T>() = kc::dino_loss_forward<T>(q.data<T>(), student.data<T>(), teacher.data<T>(),
                                               center.data<T>(), G, V, B, K, tau_s, tau_t);
  });
  if (q_out) *q_out = q;
  if (needs_grad({student})) {
    Tensor sd = student.detach();
    record(loss, "dino_loss", {student}, [=](const Tensor& g) {
      Tensor ds = Tensor::empty(sd.shape(), g.dtype(), g.device());
      const double dloss = g.item();
      dispatch_float("dino_loss", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kc::dino_loss_backward<T>(ds.data<T>(), sd.data<T>(), q.data<T>(), G, V, B, K, tau_s,
                                  dloss);
      });
      return std::vector<Tensor>{ds};
    });
  }
  return loss;
}

}  // namespace dino
