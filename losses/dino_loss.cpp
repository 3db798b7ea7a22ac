#include "losses/dino_loss.h"

#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"
#include "dist/communicator.h"

namespace dino {

DinoLossStats DeviceLossStats::decode(const float* v) const {
  DinoLossStats s;
  const double W = ranks > 0 ? double(ranks) : 1.0;
  s.loss = v[0] / W;
  s.teacher_entropy = v[1] / W;
  s.batch_entropy = v[2];
  for (int64_t r = 0; r < ranks; ++r)
    if (!std::isfinite(v[size_t(3 + r)])) s.nonfinite_ranks.push_back(int(r));
  s.kl = s.loss - s.teacher_entropy;
  s.teacher_temp = teacher_temp;
  return s;
}

namespace {

// Hands device statistics over: read back now into *stats (the host waits for the device), or
// left on the device in *later.
void deliver(const Tensor& values, int64_t ranks, double tau_t, DinoLossStats* stats,
             DeviceLossStats* later) {
  DeviceLossStats d{values, ranks, tau_t};
  if (later) {
    *later = d;
  } else if (stats) {
    const std::vector<float> v = values.to_vector();  // the step's one read-back
    *stats = d.decode(v.data());
  }
}

// Over several ranks on a device with a device communicator (NCCL): one all-reduce (sum) of the
// teacher's column sums, q's column sums and the local statistics, packed into one buffer on
// the device; then the center update with every rank's rows, and the batch-mean entropy from
// the global column means of q.
Tensor forward_device_distributed(const Tensor& student, const Tensor& teacher, Tensor& center,
                                  const DinoLossConfig& cfg, double tau_t,
                                  const Tensor& tau_t_tensor, DinoLossStats* stats,
                                  DeviceLossStats* later, dist::Communicator& comm) {
  const DinoLossResult r = dino_loss(student, teacher, center, cfg.global_crops, cfg.student_temp,
                                     tau_t_tensor, {true, true});
  const Tensor &loss = r.loss, &q = r.q;
  NoGradGuard no_grad;
  const Backend& be = backend(teacher.device(), "dino_loss");
  const int64_t R = teacher.size(0), K = teacher.size(1), W = comm.size();
  const DType dt = precision::column_sums(teacher);
  Tensor local = Tensor::empty({3}, dt, teacher.device());
  be.dino_teacher_stats(local, loss, q);
  // [teacher column sums (K), q column sums (K), local stats (3), per rank: loss - loss (W)]:
  // the last slots are 0 except a NaN where a rank's loss is not finite.
  Tensor sums = Tensor::empty({2 * K + 3 + W}, dt, teacher.device());
  sums.narrow(0, K).copy_from(r.teacher_colsum.reshape({K}));
  sums.narrow(K, K).copy_from(sum_last(transpose_last2(q), false));
  sums.narrow(2 * K, 3).copy_from(local);
  sums.narrow(2 * K + 3, W).fill(0);
  sums.narrow(2 * K + 3 + comm.rank(), 1).copy_from(sub(local.narrow(0, 1), local.narrow(0, 1)));
  comm.all_reduce(sums, dist::ReduceOp::sum);
  be.dino_center_update(center, sums.narrow(0, K), R * W, cfg.center_momentum);
  center.mark_modified();
  if (stats || later) {
    // -sum m log m; the 1e-30 only keeps log finite where m is 0 (0 log 0 = 0).
    const Tensor m = scale(sums.narrow(K, K), 1.0 / double(R * W));
    const Tensor batch_entropy = scale(sum(mul(m, log(add_scalar(m, 1e-30)))), -1.0);
    deliver(concat({sums.narrow(2 * K, 2), batch_entropy.reshape({1}), sums.narrow(2 * K + 3, W)}),
            W, tau_t, stats, later);
  }
  return loss;
}

// The CPU form over several ranks: the sums of the loss, the rows' teacher entropies, q's
// column means and the teacher's column sums, in f64, through one all-reduce; then the center
// update with every rank's rows. With one rank every figure is computed as the
// single-process path computes it, bit for bit.
template <class T>
Tensor forward_cpu_distributed(const Tensor& student, const Tensor& teacher, Tensor& center,
                               const DinoLossConfig& cfg, double tau_t, const Tensor& tau_t_tensor,
                               DinoLossStats* stats, dist::Communicator& comm) {
  const DinoLossResult r = dino_loss(student, teacher, center, cfg.global_crops, cfg.student_temp,
                                     tau_t_tensor, {true, false});
  const Tensor &loss = r.loss, &q = r.q;
  NoGradGuard no_grad;
  const int64_t R = teacher.size(0), K = teacher.size(1), W = comm.size();
  const double rows = double(R * W);
  // [loss, Σ H(q_r), q column means (K), teacher column sums (K), per rank: loss - loss (W)]:
  // the last slots are 0 except a NaN where a rank's loss is not finite.
  Tensor sums = Tensor::zeros({2 * K + 2 + W}, DType::f64);
  double* s = sums.data<double>();
  s[0] = loss.item();
  s[2 + 2 * K + comm.rank()] = s[0] - s[0];
  const Tensor qh = q.to(DType::f64);
  const double* pq = qh.data<double>();
  const T* pt = teacher.data<T>();
  for (int64_t r = 0; r < R; ++r) {
    double h = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double v = pq[r * K + k];
      if (v > 0) h -= v * std::log(v);
      s[2 + k] += v / rows;
      s[2 + K + k] += double(pt[r * K + k]);
    }
    s[1] += h;
  }
  comm.all_reduce(sums, dist::ReduceOp::sum);
  T* c = center.data<T>();
  for (int64_t k = 0; k < K; ++k)
    c[k] = T(cfg.center_momentum * double(c[k]) + (1 - cfg.center_momentum) * s[2 + K + k] / rows);
  center.mark_modified();
  if (stats) {
    double hb = 0;
    for (int64_t k = 0; k < K; ++k)
      if (s[2 + k] > 0) hb -= s[2 + k] * std::log(s[2 + k]);
    stats->loss = s[0] / double(W);
    stats->teacher_entropy = s[1] / rows;
    stats->batch_entropy = hb;
    for (int64_t r = 0; r < W; ++r)
      if (!std::isfinite(s[2 + 2 * K + r])) stats->nonfinite_ranks.push_back(int(r));
    stats->kl = stats->loss - stats->teacher_entropy;
    stats->teacher_temp = tau_t;
  }
  return loss;
}

}  // namespace

DinoLoss::DinoLoss(const DinoLossConfig& cfg, int64_t iters_per_epoch) : cfg_(cfg) {
  DINO_CHECK(cfg.out_dim > 0 && cfg.global_crops >= 1, "[dino_loss] bad out_dim or global_crops");
  DINO_CHECK(cfg.center_momentum >= 0 && cfg.center_momentum <= 1,
             "[dino_loss] center_momentum must be in [0, 1]");
  center = Tensor::zeros({1, cfg.out_dim});
  register_buffer("center", &center);
  temp_ = LinearWarmup{cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs,
                       iters_per_epoch};
}

void DinoLoss::set_teacher_temp(double tau_t) {
  if (temperature_.defined() && temperature_.device() == center.device() &&
      temperature_value_ == tau_t)
    return;
  if (temperature_.defined() && temperature_.device() == center.device())
    // In place, one upload: a captured step keeps reading this tensor.
    temperature_.copy_from(Tensor::scalar(tau_t, temperature_.dtype()).reshape({1}));
  else
    temperature_ = teacher_temperature(tau_t, center.device());
  temperature_value_ = tau_t;
}

Tensor DinoLoss::forward(const Tensor& student, const Tensor& teacher, double tau_t,
                         DinoLossStats* stats, DeviceLossStats* later) {
  DINO_CHECK(center.device() == teacher.device() && center.dtype() == teacher.dtype(),
             "[dino_loss] the center is ", center.str(), ", the teacher logits ", teacher.str(),
             ": move the loss module to the logits' device");
  DINO_CHECK(!later || teacher.device() != Device::cpu,
             "[dino_loss] statistics stay on the device only with CUDA logits");
  set_teacher_temp(tau_t);
  if (comm_) {
    DINO_CHECK(comm_->device() == teacher.device(), "[dino_loss] ", device_name(teacher.device()),
               " logits need a ", device_name(teacher.device()), " communicator");
    if (teacher.device() != Device::cpu)
      return forward_device_distributed(student, teacher, center, cfg_, tau_t, temperature_, stats,
                                        later, *comm_);
    return teacher.dtype() == DType::f64
               ? forward_cpu_distributed<double>(student, teacher, center, cfg_, tau_t,
                                                 temperature_, stats, *comm_)
               : forward_cpu_distributed<float>(student, teacher, center, cfg_, tau_t, temperature_,
                                                stats, *comm_);
  }
  // One process: the statistics reduced by the backend (on CUDA on the device, read back with
  // the loss as three floats, the loss's one host synchronisation, or left there in *later);
  // the center updated after the loss has read it.
  const DinoLossResult r = dino_loss(student, teacher, center, cfg_.global_crops, cfg_.student_temp,
                                     temperature_, {stats || later, true});
  const Tensor& loss = r.loss;
  NoGradGuard no_grad;
  const Backend& be = backend(teacher.device(), "dino_loss");
  if (later) {
    Tensor dev = Tensor::empty({3}, precision::column_sums(teacher), teacher.device());
    be.dino_teacher_stats(dev, loss, r.q);
    *later = DeviceLossStats{dev, 0, tau_t};
  } else if (stats) {
    Tensor dev = Tensor::empty({3}, precision::column_sums(teacher), teacher.device());
    be.dino_teacher_stats(dev, loss, r.q);
    const Tensor v = dev.to(Device::cpu).to(DType::f64);
    const double* p = v.data<double>();
    stats->loss = p[0];
    stats->teacher_entropy = p[1];
    stats->batch_entropy = p[2];
    // Each teacher view pairs with the same number of student views, so the mean entropy over
    // pairs is the mean over teacher rows: KL = cross-entropy - entropy.
    stats->kl = stats->loss - stats->teacher_entropy;
    stats->teacher_temp = tau_t;
  }
  be.dino_center_update(center, r.teacher_colsum, teacher.size(0), cfg_.center_momentum);
  center.mark_modified();
  return loss;
}

std::optional<std::string> CollapseMonitor::update(const DinoLossStats& s) {
  recent_.push_back(s);
  if (int(recent_.size()) > window_) recent_.pop_front();
  if (int(recent_.size()) < window_) return std::nullopt;
  double h = 0, hb = 0, loss = 0;
  for (const auto& r : recent_) {
    h += r.teacher_entropy / window_;
    hb += r.batch_entropy / window_;
    loss += r.loss / window_;
  }
  if (h > kUniformCollapseFraction * log_k_)
    return str_cat(
        "uniform collapse: teacher entropy ", h, " ~ ln K = ", log_k_, " (loss ", loss,
        "). The centering wins over sharpening: lower the teacher temperature (or warm it up "
        "more slowly), raise the center momentum, raise the teacher momentum, or lower the "
        "learning rate");
  if (hb < kDominantCollapseFraction * log_k_)
    return str_cat(
        "dominant-dimension collapse: the teacher's batch-mean distribution has entropy ", hb,
        " (ln K = ", log_k_,
        "): one output dimension dominates. Sharpening wins over "
        "centering: lower the center momentum (faster centering), raise the teacher "
        "temperature slightly, raise the teacher momentum, or lower the learning rate");
  return std::nullopt;
}

}  // namespace dino
