// The fused multi-tensor launches of optimizer.cu against the host: AdamW against
// core/optim.cpp's AdamW over three steps (one with parameters that have no gradient), the EMA
// against models/multicrop.cpp's formula, gradient norms against float64 sums, and the clipping
// launch after them (scale_by_norms) against core/optim.cpp's clip functions, on the tensor
// sets `dino check --op optimizer` runs too (testing/optimizer_cases.h: 1 element, odd sizes,
// chunk edges, a large tensor and 1500 tiny ones, back to back or 16-byte aligned).
#include <cstring>

#include "core/optim.h"
#include "kernels/cuda/kernels.h"
#include "testing/optimizer_cases.h"
#include "tests/cuda/test_util.h"

namespace cu = dino::kernels::cuda;
using namespace dino::test;

namespace {

using Layout = dino::testing::TensorLayout;

std::vector<float> slice(const std::vector<float>& v, int64_t offset, int64_t n) {
  return std::vector<float>(v.begin() + offset, v.begin() + offset + n);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

const char* layout_name(bool padded) { return padded ? "aligned" : "packed"; }

}  // namespace

TEST_CASE("adamw_step matches core/optim.cpp's AdamW, skipping parameters without gradients",
          "[optimizer]") {
  for (const bool padded : {false, true}) {
    INFO(layout_name(padded) << " layout");
    dino::Rng rng(padded ? 41 : 42);
    const Layout l = dino::testing::optimizer_layout(rng, padded);
    const size_t nt = l.sizes.size();
    const size_t total = size_t(l.total);
    // The host reference: one CPU parameter per tensor, even ones with weight decay.
    std::vector<float> w0 = random_floats(rng, total, 0.1);
    std::vector<dino::Tensor> params;
    dino::ParamGroup decayed{{}, 0, 0}, plain{{}, 0, 0};
    for (size_t t = 0; t < nt; ++t) {
      params.push_back(
          dino::Tensor::from_vector(slice(w0, l.offsets[t], l.sizes[t]), {l.sizes[t]}));
      params.back().set_requires_grad();
      (t % 2 ? plain : decayed).params.push_back({"p" + std::to_string(t), params.back()});
    }
    dino::AdamW opt({decayed, plain}, 0.9, 0.999, 1e-8);

    DeviceBuffer<float> w(w0), g(total), m(std::vector<float>(total, 0.f)),
        v(std::vector<float>(total, 0.f));
    DeviceBuffer<dino::bf16> wb(total);
    std::vector<int64_t> steps(nt, 0);
    const double lrs[] = {1e-3, 3e-3, 5e-4}, wds[] = {0.04, 0.1, 0.4};
    for (int s = 0; s < 3; ++s) {
      INFO("step " << s + 1);
      // Step 2 leaves a small, a chunk-sized and the large tensor without a gradient. Their
      // device gradients are NaN: reading one would show.
      auto skipped = [&](size_t t) { return s == 1 && (t == 2 || t == 6 || t == 10); };
      std::vector<float> grad(total, NAN);
      for (size_t t = 0; t < nt; ++t) {
        if (skipped(t)) {
          params[t].zero_grad();
          continue;
        }
        const double scale = std::pow(10.0, -3.0 + 3.0 * rng.uniform());  // 1e-3 .. 1
        const std::vector<float> gt = random_floats(rng, size_t(l.sizes[t]), scale);
        std::copy(gt.begin(), gt.end(), grad.begin() + l.offsets[t]);
        params[t].set_grad(dino::Tensor::from_vector(gt, {l.sizes[t]}));
      }
      g.upload(grad);
      opt.groups()[0].lr = opt.groups()[1].lr = lrs[s];
      opt.groups()[0].weight_decay = wds[s];

      std::vector<cu::AdamWTensor> desc(nt);
      for (size_t t = 0; t < nt; ++t) {
        const int64_t o = l.offsets[t];
        if (!skipped(t)) ++steps[t];
        desc[t] = cu::AdamWTensor{w.get() + o,
                                  g.get() + o,
                                  m.get() + o,
                                  v.get() + o,
                                  reinterpret_cast<__nv_bfloat16*>(wb.get() + o),
                                  l.sizes[t],
                                  lrs[s],
                                  t % 2 ? 0.0 : wds[s],
                                  steps[t],
                                  skipped(t) ? 1 : 0};
      }
      DeviceBuffer<cu::AdamWTensor> ddesc(desc);
      const std::vector<float> w_before = w.download();
      wb.poison();
      cu::adamw_step(ddesc.get(), int(nt), 0.9, 0.999, 1e-8, test_stream());
      opt.step();

      const std::vector<float> gw = w.download(), gm = m.download(), gv = v.download();
      const std::vector<dino::bf16> gwb = wb.download();
      std::vector<double> rw(total), rm(total), rv(total), dw(total), dm(total), dv(total);
      size_t bf16_wrong = 0, skipped_changed = 0;
      for (size_t t = 0; t < nt; ++t) {
        const dino::AdamWState& st = opt.state().at("p" + std::to_string(t));
        CHECK(st.step == steps[t]);
        for (int64_t i = 0; i < l.sizes[t]; ++i) {
          const size_t k = size_t(l.offsets[t] + i);
          rw[k] = params[t].data<float>()[i];
          rm[k] = st.exp_avg.data<float>()[i];
          rv[k] = st.exp_avg_sq.data<float>()[i];
          dw[k] = gw[k], dm[k] = gm[k], dv[k] = gv[k];
          // Written with bf16(param), or, when skipped, not written at all (still poisoned).
          const uint16_t want = skipped(t) ? uint16_t(0xFFFF) : dino::bf16(gw[k]).bits;
          bf16_wrong += gwb[k].bits != want;
          skipped_changed += skipped(t) && !same_bits(gw[k], w_before[k]);
        }
      }
      // Same operations in the same order on both sides: equal but for a rare last-ulp
      // difference from the bias corrections' pow.
      expect_close("param", dw, rw, 1e-7);
      expect_close("exp_avg", dm, rm, 1e-7);
      expect_close("exp_avg_sq", dv, rv, 1e-7);
      CHECK(bf16_wrong == 0);
      CHECK(skipped_changed == 0);
    }
  }
}

TEST_CASE("ema_update matches the host EMA and writes the teacher's bf16 copies", "[optimizer]") {
  for (const bool padded : {false, true}) {
    INFO(layout_name(padded) << " layout");
    dino::Rng rng(padded ? 43 : 44);
    const Layout l = dino::testing::optimizer_layout(rng, padded);
    const size_t total = size_t(l.total);
    const std::vector<float> t0 = random_floats(rng, total, 0.1);
    const std::vector<float> st = random_floats(rng, total, 0.1);
    DeviceBuffer<float> teacher(t0), student(st);
    DeviceBuffer<dino::bf16> tb(total);
    std::vector<cu::EmaTensor> desc;
    for (size_t t = 0; t < l.sizes.size(); ++t) {
      const int64_t o = l.offsets[t];
      // The first tensor has no bf16 copy: nullptr must be honoured.
      desc.push_back({teacher.get() + o, student.get() + o,
                      t == 0 ? nullptr : reinterpret_cast<__nv_bfloat16*>(tb.get() + o),
                      l.sizes[t]});
    }
    DeviceBuffer<cu::EmaTensor> ddesc(desc);
    std::vector<float> ref = t0;
    for (const double momentum : {0.996, 0.9995}) {
      INFO("momentum " << momentum);
      tb.poison();
      cu::ema_update(ddesc.get(), int(desc.size()), momentum, test_stream());
      // models/multicrop.cpp's ema_update, over the concatenation.
      const float mf = float(momentum), one_m = float(1.0 - momentum);
      for (size_t t = 0; t < l.sizes.size(); ++t)
        for (int64_t i = 0; i < l.sizes[t]; ++i) {
          const size_t k = size_t(l.offsets[t] + i);
          ref[k] = ref[k] * mf + one_m * st[k];
        }
      const std::vector<float> got = teacher.download();
      const std::vector<dino::bf16> gotb = tb.download();
      std::vector<double> gd(total), rd(total);
      size_t bf16_wrong = 0;
      for (size_t t = 0; t < l.sizes.size(); ++t)
        for (int64_t i = 0; i < l.sizes[t]; ++i) {
          const size_t k = size_t(l.offsets[t] + i);
          gd[k] = got[k], rd[k] = ref[k];
          bf16_wrong += gotb[k].bits != (t == 0 ? uint16_t(0xFFFF) : dino::bf16(got[k]).bits);
        }
      expect_close("teacher", gd, rd, 1e-7);
      CHECK(bf16_wrong == 0);
    }
  }
}

TEST_CASE("grad_norms matches float64 norms and is deterministic", "[optimizer]") {
  for (const bool padded : {false, true}) {
    INFO(layout_name(padded) << " layout");
    dino::Rng rng(padded ? 45 : 46);
    const Layout l = dino::testing::optimizer_layout(rng, padded);
    const size_t nt = l.sizes.size();
    std::vector<float> g(size_t(l.total));
    for (size_t t = 0; t < nt; ++t) {  // scales 1e-4 .. 10 across tensors
      const std::vector<float> gt =
          random_floats(rng, size_t(l.sizes[t]), std::pow(10.0, -4.0 + 5.0 * rng.uniform()));
      std::copy(gt.begin(), gt.end(), g.begin() + l.offsets[t]);
    }
    DeviceBuffer<float> dg(g), norms(nt);
    std::vector<cu::TensorSpan> desc;
    for (size_t t = 0; t < nt; ++t) desc.push_back({dg.get() + l.offsets[t], l.sizes[t]});
    DeviceBuffer<cu::TensorSpan> ddesc(desc);
    norms.poison();
    cu::grad_norms(norms.get(), ddesc.get(), int(nt), test_stream());
    const std::vector<float> got = norms.download();
    size_t bad = 0;
    std::string first_bad;
    for (size_t t = 0; t < nt; ++t) {
      double s = 0;
      for (int64_t i = 0; i < l.sizes[t]; ++i) {
        const double x = g[size_t(l.offsets[t] + i)];
        s += x * x;
      }
      const double ref = std::sqrt(s);
      // float partial sums: a few float ulps of relative error, whatever the tensor's scale.
      if (!(std::fabs(double(got[t]) - ref) <= 1e-6 * ref)) {
        if (bad++ == 0)
          first_bad = dino::str_cat("tensor ", t, " (", l.sizes[t], " elements): got ", got[t],
                                    ", expected ", ref);
      }
    }
    INFO(bad << " of " << nt << " norms off by more than 1e-6 relative; first: " << first_bad);
    CHECK(bad == 0);

    norms.poison();
    cu::grad_norms(norms.get(), ddesc.get(), int(nt), test_stream());
    const std::vector<float> again = norms.download();
    size_t differ = 0;
    for (size_t t = 0; t < nt; ++t) differ += !same_bits(again[t], got[t]);
    CHECK(differ == 0);
  }
}

TEST_CASE("scale_by_norms clips per tensor and by the joint norm as core/optim.cpp does",
          "[optimizer]") {
  for (const bool global : {false, true})
    for (const bool padded : {false, true}) {
      INFO((global ? "global norm, " : "per tensor, ") << layout_name(padded) << " layout");
      dino::Rng rng(padded ? 47 : 48);
      const Layout l = dino::testing::optimizer_layout(rng, padded);
      const size_t nt = l.sizes.size();
      // Norms from ~1e-3 to ~1e3 around the maximum: some tensors clipped, some not.
      std::vector<float> g(size_t(l.total), NAN);  // gaps between tensors stay NaN on both sides
      std::vector<dino::Tensor> params;
      for (size_t t = 0; t < nt; ++t) {
        const double scale =
            std::pow(10.0, -3.0 + 6.0 * rng.uniform()) / std::sqrt(double(l.sizes[t]));
        const std::vector<float> gt = random_floats(rng, size_t(l.sizes[t]), scale);
        std::copy(gt.begin(), gt.end(), g.begin() + l.offsets[t]);
        params.push_back(dino::Tensor::zeros({l.sizes[t]}));
        params.back().set_requires_grad();
        params.back().set_grad(dino::Tensor::from_vector(gt, {l.sizes[t]}));
      }
      const double max_norm = global ? 50.0 : 1.0;
      DeviceBuffer<float> dg(g), norms(nt);
      std::vector<cu::TensorSpan> desc;
      for (size_t t = 0; t < nt; ++t) desc.push_back({dg.get() + l.offsets[t], l.sizes[t]});
      DeviceBuffer<cu::TensorSpan> ddesc(desc);
      cu::grad_norms(norms.get(), ddesc.get(), int(nt), test_stream());
      cu::scale_by_norms(ddesc.get(), norms.get(), int(nt), max_norm, global, test_stream());
      if (global)
        dino::clip_grad_global_norm(params, max_norm);
      else
        dino::clip_grad_per_param(params, max_norm);

      const std::vector<float> got = dg.download();
      std::vector<double> gd, rd;
      size_t gaps_written = 0;
      for (size_t t = 0; t < nt; ++t) {
        const float* ref = params[t].grad().data<float>();
        for (int64_t i = 0; i < l.sizes[t]; ++i) {
          gd.push_back(got[size_t(l.offsets[t] + i)]);
          rd.push_back(ref[i]);
        }
        const int64_t gap_end = t + 1 < nt ? l.offsets[t + 1] : l.total;
        for (int64_t k = l.offsets[t] + l.sizes[t]; k < gap_end; ++k)
          gaps_written += !std::isnan(got[size_t(k)]);
      }
      // The same double arithmetic; the norms differ by float partial sums (a few ulps).
      expect_close("clipped gradients", gd, rd, 1e-6);
      CHECK(gaps_written == 0);
    }
}
