// `dino check`'s optimizer comparisons (see selfcheck.h): AdamW's step, the EMA and the norms
// against float64 references.
#include "testing/cuda/selfcheck.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck_util.h"
#include "testing/optimizer_cases.h"

namespace dino::kernels::cuda::selfcheck {

namespace {

// AdamW's first step from zero moments, EMA and norms over the optimizer tests' tensor set
// (testing/optimizer_cases.h), packed back to back (the scalar path) or 16-byte aligned.
void check_optimizer(Table& t, Rng& rng, bool aligned) {
  const testing::TensorLayout l = testing::optimizer_layout(rng, aligned);
  const std::vector<int64_t>&sizes = l.sizes, &off = l.offsets;
  const int64_t total = l.total;
  const std::string shape =
      str_cat(sizes.size(), " tensors, ", total, " elements, ", aligned ? "aligned" : "packed");
  t.run("optimizer", shape, [&] {
    const size_t n = size_t(total);
    const std::vector<float> w = randn(rng, n, 0.1), g = randn(rng, n, 0.01),
                             s = randn(rng, n, 0.1);
    Buf<float> dw(w), dg(g), m(std::vector<float>(n, 0.f)), v(std::vector<float>(n, 0.f)), ds(s),
        teacher(w), norms(sizes.size());
    Buf<bf16> wb(n), tb(n);
    const double lr = 1e-3, wd = 0.04, momentum = 0.996;
    std::vector<AdamWTensor> ad;
    std::vector<EmaTensor> ed;
    std::vector<TensorSpan> nd;
    for (size_t i = 0; i < sizes.size(); ++i) {
      ad.push_back({dw.get() + off[i], dg.get() + off[i], m.get() + off[i], v.get() + off[i],
                    wb.bf() + off[i], sizes[i], lr, wd, 1, 0});
      ed.push_back({teacher.get() + off[i], ds.get() + off[i], tb.bf() + off[i], sizes[i]});
      nd.push_back({dg.get() + off[i], sizes[i]});
    }
    Buf<AdamWTensor> dad(ad);
    Buf<EmaTensor> ded(ed);
    Buf<TensorSpan> dnd(nd);
    adamw_step(dad.get(), int(ad.size()), 0.9, 0.999, 1e-8, cstream());
    ema_update(ded.get(), int(ed.size()), momentum, cstream());
    grad_norms(norms.get(), dnd.get(), int(nd.size()), cstream());

    // core/optim.cpp's first step: m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001.
    std::vector<double> rw(n), rm(n), rv(n), rt(n), rn(sizes.size(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      const double gi = g[i];
      rm[i] = 0.1 * gi, rv[i] = 0.001 * gi * gi;
      const double denom = std::sqrt(rv[i]) / std::sqrt(0.001) + 1e-8;
      rw[i] = double(w[i]) * (1 - lr * wd) - lr / 0.1 * rm[i] / denom;
      rt[i] = momentum * w[i] + (1 - momentum) * s[i];
    }
    for (size_t k = 0; k < sizes.size(); ++k) {
      for (int64_t i = 0; i < sizes[k]; ++i) {
        const double gi = g[size_t(off[k] + i)];
        rn[k] += gi * gi;
      }
      rn[k] = std::sqrt(rn[k]);
    }
    // The tensors' elements only: the gaps of the aligned layout belong to no tensor.
    auto in_tensors = [&](const std::vector<double>& x) {
      std::vector<double> out;
      for (size_t k = 0; k < sizes.size(); ++k)
        out.insert(out.end(), x.begin() + off[k], x.begin() + off[k] + sizes[k]);
      return out;
    };
    const std::vector<double> gw = dw.download(), gt = teacher.download();
    t.add("adamw_step", shape, "param", in_tensors(gw), in_tensors(rw), 1e-6);
    t.add("adamw_step", shape, "exp_avg", in_tensors(m.download()), in_tensors(rm), 1e-6);
    t.add("adamw_step", shape, "exp_avg_sq", in_tensors(v.download()), in_tensors(rv), 1e-6);
    std::vector<double> gw_b(n), gt_b(n);
    for (size_t i = 0; i < n; ++i)
      gw_b[i] = double(float(bf16(float(gw[i])))), gt_b[i] = double(float(bf16(float(gt[i]))));
    t.add("adamw_step", shape, "param_bf16", in_tensors(wb.download()), in_tensors(gw_b), 0.0);
    t.add("ema_update", shape, "teacher", in_tensors(gt), in_tensors(rt), 1e-6);
    t.add("ema_update", shape, "teacher_bf16", in_tensors(tb.download()), in_tensors(gt_b), 0.0);
    t.add("grad_norms", shape, "norms", norms.download(), rn, 1e-6);
  });
}

}  // namespace

std::vector<Row> run_optimizer_checks(uint64_t seed) {
  Rng rng(seed);
  std::vector<Row> rows;
  Table t{rows};
  for (const bool aligned : {false, true}) check_optimizer(t, rng, aligned);
  check_optimizer_clip(rows, seed);
  return rows;
}

}  // namespace dino::kernels::cuda::selfcheck
