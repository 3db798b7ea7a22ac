// The DINO loss as one fused op (ARCHITECTURE §4): the teacher's centred, sharpened softmax against
// the student's tempered log-softmax over every pair of different views, in one node.
//
// On CUDA (all three inputs f32 on the device) kernels/cuda/dino_loss.cu computes the loss AND
// the student gradient (for an upstream gradient of 1) in one call; the node keeps that
// gradient and its backward scales it by the upstream gradient on the device (no host
// synchronisation). The same call gives the column sums of the raw teacher logits (the
// center update's input) and, when q_out is asked for, the teacher probabilities q.
#include "core/ops_util.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t, Tensor* q_out, Tensor* teacher_colsum_out) {
  check_defined("dino_loss", student, "student");
  check_defined("dino_loss", teacher, "teacher");
  check_defined("dino_loss", center, "center");
  check_same("dino_loss", {&student, &teacher, &center});
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
  if (teacher_colsum_out) *teacher_colsum_out = Tensor();

  if (on_cuda(student)) {
#ifdef DINO_HAS_CUDA
    DINO_CHECK(student.dtype() == DType::f32, "[dino_loss] logits must be f32 on CUDA, got ",
               dtype_name(student.dtype()));
    DINO_CHECK(student.numel() < (int64_t(1) << 31) && K < (int64_t(1) << 31),
               "[dino_loss] ", shape_str(student.shape()), " is too large for the CUDA kernel");
    Tensor loss = Tensor::empty({}, DType::f32, Device::cuda);
    Tensor ds = Tensor::empty(student.shape(), DType::f32, Device::cuda);
    Tensor colsum = Tensor::empty({K}, DType::f32, Device::cuda);
    if (q_out) {
      Tensor q = Tensor::empty({G * B, K}, DType::f32, Device::cuda);
      kernels::cuda::dino_loss_forward_backward_q(
          f32_ptr(loss), f32_ptr(ds), f32_ptr(colsum), f32_ptr(q), f32_ptr(student),
          f32_ptr(teacher), f32_ptr(center), int(G), int(V), int(B), int(K), float(tau_s),
          float(tau_t), cuda_stream());
      *q_out = q;
    } else {
      kernels::cuda::dino_loss_forward_backward(
          f32_ptr(loss), f32_ptr(ds), f32_ptr(colsum), f32_ptr(student), f32_ptr(teacher),
          f32_ptr(center), int(G), int(V), int(B), int(K), float(tau_s), float(tau_t),
          cuda_stream());
    }
    if (teacher_colsum_out) *teacher_colsum_out = colsum;
    if (needs_grad({student})) {
      record(loss, "dino_loss", {student}, [ds](const Tensor& g) {
        const Tensor g32 = g.dtype() == DType::f32 ? g : g.to(DType::f32);
        Tensor out = Tensor::empty(ds.shape(), DType::f32, Device::cuda);
        kernels::cuda::dino_loss_scale_grad(f32_ptr(out), f32_ptr(ds), f32_ptr(g32), ds.numel(),
                                            cuda_stream());
        return std::vector<Tensor>{out};
      });
    }
    return loss;
#endif
  }

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

Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t, Tensor* q_out) {
  return dino_loss(student, teacher, center, G, tau_s, tau_t, q_out, nullptr);
}

}  // namespace dino
