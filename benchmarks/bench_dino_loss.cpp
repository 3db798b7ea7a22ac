// `dino bench dino-loss`: our fused DINO loss (kernels/cuda/dino_loss.cu: loss, student-logit
// gradient and teacher column sums in one call, then the center update) against a composite
// written the way eager autograd runs facebookresearch/dino's DINOLoss: teacher softmax, teacher
// column sums, student log-softmax, one dot per (teacher view, student view) pair and row, the
// loss, the gradient of each student view's log-probabilities, the log-softmax backward, the
// center update: eight launches, every intermediate (V*B, K) or (G*B, K) through memory.
//
// Minimum bytes (ARCHITECTURE §5): read the student (V*B*K*4) and teacher (G*B*K*4) logits once and
// the center (K*4), write the student gradient (V*B*K*4) and the center (K*4) once. No FLOPs
// counted (a few per element; memory-bound). Inputs rotate over sets of student + teacher.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "benchmarks/bench.h"
#include "benchmarks/composite.h"
#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/op_cases.h"

namespace dino::bench {

namespace {

namespace kc = dino::kernels::cuda;
constexpr float kTauS = 0.1f, kTauT = 0.04f, kMomentum = 0.9f;

struct Shape {
  int G, V, B, K;
  std::string label;
  std::string str() const { return str_cat("G=", G, " V=", V, " B=", B, " K=", K); }
};

std::vector<Shape> shapes_for(const Options& opt) {
  std::vector<Shape> s;
  // The op table's dino_loss cases of the set (testing/op_cases_nn.cpp): G, V, B, K.
  for (const testing::OpCase* c : testing::bench_cases({"dino_loss"}, opt.shapes))
    s.push_back({int(c->dims[0]), int(c->dims[1]), int(c->dims[2]), int(c->dims[3]), c->label});
  for (const std::string& c : opt.custom) {
    Shape x{0, 0, 0, 0, "custom"};
    char sep;
    std::istringstream in(c);
    DINO_CHECK((in >> x.G >> sep >> x.V >> sep >> x.B >> sep >> x.K) && x.G >= 1 && x.V > x.G - 1 &&
                   x.G * x.V - x.G > 0 && x.B > 0 && x.K > 0,
               "[bench] dino-loss --shape wants G,V,B,K with G >= 1, V >= G, G*V > G; got '", c,
               "'");
    s.push_back(x);
  }
  DINO_CHECK(!s.empty(), "[bench] dino-loss: no shapes for --shapes '", opt.shapes, "' (vit, all)");
  return s;
}

struct Set {
  DeviceBuffer student, teacher;
};

float read_scalar(const DeviceBuffer& b) {
  float v = 0;
  CUDA_CHECK(cudaMemcpyAsync(&v, b.as(), sizeof(float), cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return v;
}

void run_shape(const Shape& sh, const Options& opt, const Ceilings& c, Report& report) {
  const int G = sh.G, V = sh.V, B = sh.B, K = sh.K;
  const int64_t sn = int64_t(V) * B * K, tn = int64_t(G) * B * K;
  const int pairs = G * (V - 1);
  const float coef = 1.f / float(pairs * B);
  const std::string shape = sh.str();
  const cudaStream_t s = stream();
  const int nsets = rotation_sets(size_t(4 * (sn + tn)), c.l2_bytes);
  std::vector<Set> sets(static_cast<size_t>(nsets));
  for (int i = 0; i < nsets; ++i) {
    sets[size_t(i)].student = DeviceBuffer(size_t(4 * sn));
    sets[size_t(i)].teacher = DeviceBuffer(size_t(4 * tn));
    // Logits of a normalised last layer are cosines in [-1, 1].
    fill_uniform_f32(sets[size_t(i)].student.as<float>(), sn, 700 + i, -1.f, 1.f);
    fill_uniform_f32(sets[size_t(i)].teacher.as<float>(), tn, 800 + i, -1.f, 1.f);
  }
  auto set_of = [&](int i) -> Set& { return sets[size_t(i % nsets)]; };
  DeviceBuffer center(size_t(4 * K)), center0(size_t(4 * K)), loss(4), ds(size_t(4 * sn)),
      colsum(size_t(4 * K)), q(size_t(4 * tn)), logp(size_t(4 * sn)), dlogp(size_t(4 * sn)),
      partial(size_t(4 * pairs * B)), c_loss(4), c_ds(size_t(4 * sn)), c_colsum(size_t(4 * K));
  fill_uniform_f32(center0.as<float>(), K, 900, -0.1f, 0.1f);
  DeviceBuffer tau_t(4);  // the kernels read the teacher temperature from the device
  kc::fill_f32(tau_t.as<float>(), kTauT, 1);
  CUDA_CHECK(
      cudaMemcpyAsync(center.as(), center0.as(), size_t(4 * K), cudaMemcpyDeviceToDevice, s));
  const Work work{0, 4.0 * double(sn + tn + K) + 4.0 * double(sn + K)};

  auto ours = [&](const Set& x, float* l, float* d, float* cs) {
    kc::dino_loss_forward_backward(l, d, cs, x.student.as<float>(), x.teacher.as<float>(),
                                   center.as<float>(), G, V, B, K, kTauS, tau_t.as<float>(), s);
  };
  auto composite_loss = [&](const Set& x, float* l, float* d, float* cs) {
    composite::dl_teacher_softmax(q.as<float>(), x.teacher.as<float>(), center.as<float>(), G * B,
                                  K, kTauT, s);
    composite::dl_colsum(cs, x.teacher.as<float>(), G * B, K, s);
    composite::dl_log_softmax(logp.as<float>(), x.student.as<float>(), V * B, K, kTauS, s);
    composite::dl_pair_dots(partial.as<float>(), q.as<float>(), logp.as<float>(), G, V, B, K, s);
    composite::dl_loss(l, partial.as<float>(), pairs * B, coef, s);
    composite::dl_grad_logp(dlogp.as<float>(), q.as<float>(), G, V, B, K, coef, s);
    composite::dl_log_softmax_backward(d, dlogp.as<float>(), logp.as<float>(), V * B, K, kTauS, s);
  };

  // ---- cross-check on set 0, both from the same center -----------------------------------------
  json ck;
  if (opt.check) {
    try {
      composite_loss(sets[0], c_loss.as<float>(), c_ds.as<float>(), c_colsum.as<float>());
      ours(sets[0], loss.as<float>(), ds.as<float>(), colsum.as<float>());
      const float lo = read_scalar(loss), lc = read_scalar(c_loss);
      ck = {{"loss_ours", lo},
            {"loss_composite", lc},
            {"rel_diff_loss", std::fabs(double(lo) - lc) / std::max(1e-30, std::fabs(double(lc)))},
            {"rel_diff", rel_diff(ds.as(), false, c_ds.as(), false, sn)},
            {"rel_diff_colsum", rel_diff(colsum.as(), false, c_colsum.as(), false, K)}};
    } catch (const std::exception& e) {
      ck = {{"check_error", e.what()}};
    }
  }

  auto add = [&](const char* impl, const std::function<void(int)>& body, const json& extra) {
    try {
      const Timing t = time_reps(opt.warmup, opt.reps, body);
      json row = measurement("dino-loss", shape, "forward+backward", impl, t, work, c);
      row["label"] = sh.label;
      row["G"] = G, row["V"] = V, row["B"] = B, row["K"] = K, row["input_sets"] = nsets;
      if (std::string(impl) == "ours" && !ck.is_null()) {
        row.update(ck);
        row["check_ref"] = "composite";
      }
      row.update(extra);
      report.add(row);
    } catch (const std::exception& e) {
      report.add(error_row("dino-loss", shape, "forward+backward", impl, e.what()));
    }
  };
  add(
      "ours",
      [&](int i) {
        ours(set_of(i), loss.as<float>(), ds.as<float>(), colsum.as<float>());
        kc::dino_center_update(center.as<float>(), colsum.as<float>(), int64_t(G) * B, K, kMomentum,
                               s);
      },
      json{{"note", "dino_loss_forward_backward + dino_center_update"}});
  add(
      "composite",
      [&](int i) {
        composite_loss(set_of(i), loss.as<float>(), ds.as<float>(), colsum.as<float>());
        composite::dl_center_update(center.as<float>(), colsum.as<float>(), G * B, K, kMomentum, s);
      },
      json{{"note",
            "8 launches: softmax, colsum, log-softmax, pair dots, loss, dlogp, log-softmax "
            "backward, center"}});
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

json bench_dino_loss(const Options& opt) {
  const std::vector<Shape> shapes = shapes_for(opt);
  const Ceilings c = measure_ceilings(opt);
  std::cout << c.to_json().dump() << std::endl;
  std::printf("dino-loss: %s\n", c.describe().c_str());
  Report report("dino-loss");
  for (const Shape& sh : shapes) {
    if (opt.budget_s > 0 && seconds_since_start() > opt.budget_s) {
      report.add(
          error_row("dino-loss", sh.str(), "forward+backward", "all", "skipped: past --budget"));
      continue;
    }
    try {
      run_shape(sh, opt, c, report);
    } catch (const std::exception& e) {
      report.add(error_row("dino-loss", sh.str(), "forward+backward", "all", e.what()));
    }
  }
  report.add_ratios();
  report.print_table();
  return json{{"bench", "dino-loss"}, {"ceilings", c.to_json()}, {"results", report.rows()}};
}

}  // namespace dino::bench
