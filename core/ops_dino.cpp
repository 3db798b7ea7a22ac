// The DINO loss as one fused op (ARCHITECTURE §4): the teacher's centred, sharpened softmax against
// the student's tempered log-softmax over every pair of different views, in one node, on the
// backend of the tensors' device. The backend's forward hands back what its backward reads: on
// CUDA the student gradient for an upstream gradient of 1, formed in the same pass and scaled
// on the device (no host synchronisation); on the CPU the teacher probabilities q. The same
// call gives, on request, q and the column sums of the raw teacher logits (the center
// update's input).
#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

using namespace detail;

DinoLossResult dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center,
                         int64_t G, double tau_s, const Tensor& tau_t, DinoLossRequest request) {
  check_defined("dino_loss", student, "student");
  check_defined("dino_loss", teacher, "teacher");
  check_defined("dino_loss", center, "center");
  check_same("dino_loss", {&student, &teacher, &center});
  DINO_CHECK(student.dim() == 2 && teacher.dim() == 2,
             "[dino_loss] student and teacher must be "
             "(rows, K), got ",
             shape_str(student.shape()), " and ", shape_str(teacher.shape()));
  const int64_t K = student.size(1);
  DINO_CHECK(teacher.size(1) == K, "[dino_loss] teacher has ", teacher.size(1),
             " outputs, student ", K);
  DINO_CHECK(center.numel() == K, "[dino_loss] center has ", center.numel(), " elements, expected ",
             K);
  DINO_CHECK(G >= 1 && teacher.size(0) % G == 0, "[dino_loss] ", teacher.size(0),
             " teacher rows are not a multiple of ", G, " global views");
  const int64_t B = teacher.size(0) / G;
  DINO_CHECK(B >= 1 && student.size(0) % B == 0 && student.size(0) / B >= G, "[dino_loss] ",
             student.size(0), " student rows do not hold at least ", G, " views of batch ", B);
  const int64_t V = student.size(0) / B;
  DINO_CHECK(G * V - G > 0, "[dino_loss] no pair of different views (G = ", G, ", V = ", V, ")");
  check_defined("dino_loss", tau_t, "tau_t");
  DINO_CHECK(tau_t.device() == student.device() && tau_t.numel() == 1, "[dino_loss] tau_t is ",
             tau_t.str(), ", expected one value on the logits' device");
  DINO_CHECK(tau_s > 0, "[dino_loss] temperatures must be positive");
  if (on_cuda(student)) {
    DINO_CHECK(student.dtype() == DType::f32, "[dino_loss] logits must be f32 on CUDA, got ",
               dtype_name(student.dtype()));
    DINO_CHECK(student.numel() < (int64_t(1) << 31), "[dino_loss] ", shape_str(student.shape()),
               " is too large for the CUDA kernel");
  }
  const Backend& be = backend(student.device(), "dino_loss");
  Tensor loss = Tensor::empty({}, student.dtype(), student.device());
  Tensor q = request.q ? Tensor::empty({G * B, K}, student.dtype(), student.device()) : Tensor();
  Tensor colsum = request.teacher_colsum
                      ? Tensor::empty({K}, precision::column_sums(teacher), teacher.device())
                      : Tensor();
  Tensor saved;
  be.dino_loss(loss, q, colsum, saved, student, teacher, center, G, tau_s, tau_t);
  if (needs_grad({student})) {
    const Tensor sd = student.detach();
    record(loss, "dino_loss", {student}, [=](const Tensor& g) {
      Tensor ds = Tensor::empty(sd.shape(), sd.dtype(), sd.device());
      backend(sd.device()).dino_loss_backward(ds, g.to(sd.dtype()), saved, sd, G, tau_s);
      return std::vector<Tensor>{ds};
    });
  }
  return {loss, q, colsum};
}

Tensor teacher_temperature(double tau_t, Device device) {
  DINO_CHECK(tau_t > 0, "[dino_loss] temperatures must be positive");
  if (device == Device::cpu) return Tensor::scalar(tau_t, DType::f64).reshape({1});
  return Tensor::scalar(tau_t, DType::f32).reshape({1}).to(device);
}

Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t) {
  return dino_loss(student, teacher, center, G, tau_s, teacher_temperature(tau_t, student.device()),
                   DinoLossRequest{})
      .loss;
}

}  // namespace dino
