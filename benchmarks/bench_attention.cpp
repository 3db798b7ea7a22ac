// `dino bench attention`: our flash attention (kernels/cuda/attention.cu; on an sm_90 device at
// head dim 64 both its kernels, mma.sync and wgmma, the one it picks as "ours")
// against cuDNN's SDPA
// (benchmarks/cudnn/cudnn_attention.cpp) and a composite (split heads, cuBLASLt batched Q K^T with
// the scale as alpha, a softmax kernel, cuBLASLt P V, merge heads; the backward from the saved
// P: dV = P^T dO, dP = dO V^T, a softmax-backward kernel, dQ = dS K, dK = dS^T Q), forward and
// backward, on packed qkv (B, N, 3*H*Dh) bf16.
//
// Counts (per shape): forward 4·B·H·N²·Dh FLOPs (two products); backward 10·B·H·N²·Dh (five
// products, the FlashAttention convention: a recomputed Q K^T is not counted, so a kernel that
// recomputes shows it as a lower rate). Minimum bytes: forward reads qkv and writes out and lse;
// backward reads qkv, out, dout, lse and writes dqkv. Inputs rotate over enough sets (qkv,
// dout, out, lse per set) to stream from memory; the composite's saved P is one buffer.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "benchmarks/bench.h"
#include "benchmarks/composite.h"
#include "benchmarks/cudnn/baselines.h"
#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"

namespace dino::bench {

namespace {

namespace kc = dino::kernels::cuda;
using bf16 = __nv_bfloat16;

struct Shape {
  int B, N, H, Dh;
  std::string label;
  std::string str() const { return str_cat("B=", B, " N=", N, " H=", H, " Dh=", Dh); }
};

std::vector<Shape> shapes_for(const Options& opt) {
  std::vector<Shape> s;
  // The op table's attention cases of the set (testing/op_cases_nn.cpp): B, N, H, Dh.
  for (const testing::OpCase* c : testing::bench_cases({"attention"}, opt.shapes))
    s.push_back({int(c->dims[0]), int(c->dims[1]), int(c->dims[2]), int(c->dims[3]), c->label});
  for (const std::string& c : opt.custom) {
    Shape x{0, 0, 0, 0, "custom"};
    char sep;
    std::istringstream in(c);
    DINO_CHECK(
        (in >> x.B >> sep >> x.N >> sep >> x.H >> sep >> x.Dh) && x.B > 0 && x.N > 0 && x.H > 0,
        "[bench] attention --shape wants B,N,H,Dh, got '", c, "'");
    s.push_back(x);
  }
  DINO_CHECK(!s.empty(), "[bench] attention: no shapes for --shapes '", opt.shapes,
             "' (vit, long, all)");
  return s;
}

struct Set {
  DeviceBuffer qkv, dout, out, lse;
};

void run_shape(const Shape& sh, const Options& opt, const Ceilings& c, Report& report) {
  const int B = sh.B, N = sh.N, H = sh.H, Dh = sh.Dh;
  const int64_t hd = int64_t(H) * Dh, qkv_n = int64_t(B) * N * 3 * hd, o_n = int64_t(B) * N * hd;
  const int64_t lse_n = int64_t(B) * H * N, bh = int64_t(B) * H;
  const std::string shape = sh.str();
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const cudaStream_t s = stream();

  const size_t set_bytes = size_t(2 * qkv_n + 4 * o_n + 4 * lse_n);
  const int nsets = rotation_sets(set_bytes, c.l2_bytes);
  std::vector<Set> sets(static_cast<size_t>(nsets));
  for (int i = 0; i < nsets; ++i) {
    Set& x = sets[size_t(i)];
    x.qkv = DeviceBuffer(size_t(2 * qkv_n));
    x.dout = DeviceBuffer(size_t(2 * o_n));
    x.out = DeviceBuffer(size_t(2 * o_n));
    x.lse = DeviceBuffer(size_t(4 * lse_n));
    fill_uniform_bf16(x.qkv.as(), qkv_n, 100 + i, -1.f, 1.f);
    fill_uniform_bf16(x.dout.as(), o_n, 200 + i, -1.f, 1.f);
  }
  DeviceBuffer dqkv(size_t(2 * qkv_n));
  const Work fwd{4.0 * double(bh) * N * N * Dh, double(2 * qkv_n + 2 * o_n + 4 * lse_n)};
  const Work bwd{10.0 * double(bh) * N * N * Dh,
                 double(2 * qkv_n + 4 * o_n + 4 * lse_n + 2 * qkv_n)};
  auto set_of = [&](int i) -> Set& { return sets[size_t(i % nsets)]; };

  // The composite's buffers: heads, scores/probabilities, their gradient.
  const size_t nn_bytes = size_t(2 * bh) * size_t(N) * size_t(N);
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const bool composite_fits = 2 * nn_bytes + size_t(14 * o_n) < free_b / 2;
  DeviceBuffer q, k, v, oh, doh, dq, dk, dv, P, dP, c_out, c_dqkv;
  if (composite_fits) {
    for (DeviceBuffer* b : {&q, &k, &v, &oh, &doh, &dq, &dk, &dv})
      *b = DeviceBuffer(size_t(2 * o_n));
    P = DeviceBuffer(nn_bytes);
    dP = DeviceBuffer(nn_bytes);
    c_out = DeviceBuffer(size_t(2 * o_n));
    c_dqkv = DeviceBuffer(size_t(2 * qkv_n));
  }
  const int64_t head_stride = int64_t(N) * Dh, nn = int64_t(N) * N;
  auto composite_forward = [&](const bf16* qkv, bf16* out) {
    composite::tokens_to_heads(q.as(), qkv, 3 * hd, B, N, H, Dh, s);
    composite::tokens_to_heads(k.as(), qkv + hd, 3 * hd, B, N, H, Dh, s);
    composite::tokens_to_heads(v.as(), qkv + 2 * hd, 3 * hd, B, N, H, Dh, s);
    lt_matmul(P.as(), true, q.as(), k.as(), N, N, Dh, false, true, int(bh), head_stride,
              head_stride, nn, scale);
    composite::softmax_rows(P.as(), bh * N, N, s);
    lt_matmul(oh.as(), true, P.as(), v.as(), N, Dh, N, false, false, int(bh), nn, head_stride,
              head_stride, 1.f);
    composite::heads_to_tokens(out, hd, oh.as(), B, N, H, Dh, s);
  };
  auto composite_backward = [&](const bf16* dout, bf16* dx) {
    composite::tokens_to_heads(doh.as(), dout, hd, B, N, H, Dh, s);
    lt_matmul(dv.as(), true, P.as(), doh.as(), N, Dh, N, true, false, int(bh), nn, head_stride,
              head_stride, 1.f);
    lt_matmul(dP.as(), true, doh.as(), v.as(), N, N, Dh, false, true, int(bh), head_stride,
              head_stride, nn, 1.f);
    composite::softmax_rows_backward(dP.as(), P.as(), bh * N, N, scale, s);
    lt_matmul(dq.as(), true, dP.as(), k.as(), N, Dh, N, false, false, int(bh), nn, head_stride,
              head_stride, 1.f);
    lt_matmul(dk.as(), true, dP.as(), q.as(), N, Dh, N, true, false, int(bh), nn, head_stride,
              head_stride, 1.f);
    composite::heads_to_tokens(dx, 3 * hd, dq.as(), B, N, H, Dh, s);
    composite::heads_to_tokens(dx + hd, 3 * hd, dk.as(), B, N, H, Dh, s);
    composite::heads_to_tokens(dx + 2 * hd, 3 * hd, dv.as(), B, N, H, Dh, s);
  };

  // Every set gets a forward's out and lse first: the backward timings read them.
  try {
    for (Set& x : sets)
      kc::attention_forward(x.out.as<bf16>(), x.lse.as<float>(), x.qkv.as<bf16>(), B, N, H, Dh, s);
  } catch (const std::exception&) {
    // reported by the "ours" rows below
  }

  // ---- cross-check on set 0 (against the composite; lse of cuDNN against ours) --------------
  json checks;  // impl -> {forward, backward, lse}
  Set& s0 = sets[0];
  const bf16* qkv0 = s0.qkv.as<bf16>();
  if (opt.check && composite_fits) {
    try {
      composite_forward(qkv0, c_out.as<bf16>());
      composite_backward(s0.dout.as<bf16>(), c_dqkv.as<bf16>());
      kc::attention_forward(s0.out.as<bf16>(), s0.lse.as<float>(), qkv0, B, N, H, Dh, s);
      kc::attention_backward(dqkv.as<bf16>(), s0.dout.as<bf16>(), qkv0, s0.out.as<bf16>(),
                             s0.lse.as<float>(), B, N, H, Dh, s);
      checks["ours"] = {{"forward", rel_diff(s0.out.as(), true, c_out.as(), true, o_n)},
                        {"backward", rel_diff(dqkv.as(), true, c_dqkv.as(), true, qkv_n)}};
    } catch (const std::exception& e) {
      checks["ours"] = {{"error", e.what()}};
    }
    try {
      DeviceBuffer out2(size_t(2 * o_n)), lse2(size_t(4 * lse_n));
      cudnn_attention_forward(out2.as<bf16>(), lse2.as<float>(), qkv0, B, N, H, Dh, s);
      checks["cudnn"]["forward"] = rel_diff(out2.as(), true, c_out.as(), true, o_n);
      checks["cudnn"]["lse_vs_ours"] = rel_diff(lse2.as(), false, s0.lse.as(), false, lse_n);
      cudnn_attention_backward(dqkv.as<bf16>(), s0.dout.as<bf16>(), qkv0, out2.as<bf16>(),
                               lse2.as<float>(), B, N, H, Dh, s);
      checks["cudnn"]["backward"] = rel_diff(dqkv.as(), true, c_dqkv.as(), true, qkv_n);
    } catch (const std::exception& e) {
      checks["cudnn"]["error"] = e.what();
    }
    CUDA_CHECK(cudaStreamSynchronize(s));
  }

  auto add = [&](const char* pass, const char* impl, const std::function<void(int)>& body,
                 const Work& w, const json& extra) {
    try {
      const Timing t = time_reps(opt.warmup, opt.reps, body);
      json row = measurement("attention", shape, pass, impl, t, w, c);
      row["label"] = sh.label;
      row["B"] = B, row["N"] = N, row["H"] = H, row["Dh"] = Dh, row["input_sets"] = nsets;
      const char* key = std::string(pass) == "forward" ? "forward" : "backward";
      if (checks.contains(impl) && checks[impl].contains(key)) {
        row["rel_diff"] = checks[impl][key];
        row["check_ref"] = "composite";
      }
      if (std::string(impl) == "cudnn" && std::string(pass) == "forward" &&
          checks.contains("cudnn") && checks["cudnn"].contains("lse_vs_ours"))
        row["lse_rel_diff_vs_ours"] = checks["cudnn"]["lse_vs_ours"];
      row.update(extra);
      report.add(row);
    } catch (const std::exception& e) {
      report.add(error_row("attention", shape, pass, impl, e.what()));
    }
  };

  // ---- ours --------------------------------------------------------------------------------
  // "ours" is what attention_forward and attention_backward run here (attention_kernel_for:
  // wgmma on an sm_90 device at Dh = 64 past 64 tokens); the other kernel, where it runs, is
  // timed beside it on the same inputs as "ours-mma" or "ours-wgmma".
  const kc::AttentionKernel picked = kc::attention_kernel_for(N, Dh);
  add(
      "forward", "ours",
      [&](int i) {
        Set& x = set_of(i);
        kc::attention_forward(x.out.as<bf16>(), x.lse.as<float>(), x.qkv.as<bf16>(), B, N, H, Dh,
                              s);
      },
      fwd, json{{"kernel", kc::attention_kernel_name(picked)}});
  add(
      "backward", "ours",
      [&](int i) {
        Set& x = set_of(i);
        kc::attention_backward(dqkv.as<bf16>(), x.dout.as<bf16>(), x.qkv.as<bf16>(),
                               x.out.as<bf16>(), x.lse.as<float>(), B, N, H, Dh, s);
      },
      bwd, json{{"kernel", kc::attention_kernel_name(picked)}});
  for (const kc::AttentionKernel other : {kc::AttentionKernel::mma, kc::AttentionKernel::wgmma}) {
    if (other == picked || !kc::attention_kernel_unavailable(other, Dh).empty()) continue;
    const std::string impl = str_cat("ours-", kc::attention_kernel_name(other));
    const json kernel{{"kernel", kc::attention_kernel_name(other)}};
    add(
        "forward", impl.c_str(),
        [&](int i) {
          Set& x = set_of(i);
          kc::attention_forward_with(other, x.out.as<bf16>(), x.lse.as<float>(), x.qkv.as<bf16>(),
                                     B, N, H, Dh, s);
        },
        fwd, kernel);
    add(
        "backward", impl.c_str(),
        [&](int i) {
          Set& x = set_of(i);
          kc::attention_backward_with(other, dqkv.as<bf16>(), x.dout.as<bf16>(), x.qkv.as<bf16>(),
                                      x.out.as<bf16>(), x.lse.as<float>(), B, N, H, Dh, s);
        },
        bwd, kernel);
  }

  // ---- cuDNN -------------------------------------------------------------------------------
  if (!cudnn_available()) {
    for (const char* pass : {"forward", "backward"})
      report.add(error_row("attention", shape, pass, "cudnn", cudnn_version()));
  } else {
    for (const bool backward : {false, true}) {
      const char* pass = backward ? "backward" : "forward";
      json extra;
      try {  // build the plan outside the timing, and record it
        if (!backward)
          cudnn_attention_forward(s0.out.as<bf16>(), s0.lse.as<float>(), qkv0, B, N, H, Dh, s);
        else
          cudnn_attention_backward(dqkv.as<bf16>(), s0.dout.as<bf16>(), qkv0, s0.out.as<bf16>(),
                                   s0.lse.as<float>(), B, N, H, Dh, s);
        const CudnnPlanInfo p = cudnn_last_plan();
        extra = {{"cudnn_version", cudnn_version()},
                 {"cudnn_graph", p.path},
                 {"engine", p.engine},
                 {"workspace_bytes", p.workspace_bytes},
                 {"plan_build_s", p.build_seconds}};
      } catch (const std::exception& e) {
        report.add(error_row("attention", shape, pass, "cudnn", e.what()));
        continue;
      }
      if (!backward) {
        add(
            pass, "cudnn",
            [&](int i) {
              Set& x = set_of(i);
              cudnn_attention_forward(x.out.as<bf16>(), x.lse.as<float>(), x.qkv.as<bf16>(), B, N,
                                      H, Dh, s);
            },
            fwd, extra);
      } else {
        add(
            pass, "cudnn",
            [&](int i) {
              Set& x = set_of(i);
              cudnn_attention_backward(dqkv.as<bf16>(), x.dout.as<bf16>(), x.qkv.as<bf16>(),
                                       x.out.as<bf16>(), x.lse.as<float>(), B, N, H, Dh, s);
            },
            bwd, extra);
      }
    }
  }

  // ---- composite ---------------------------------------------------------------------------
  if (!composite_fits) {
    for (const char* pass : {"forward", "backward"})
      report.add(error_row("attention", shape, pass, "composite",
                           str_cat("needs ", 2 * nn_bytes / 1e9, " GB for P and dP")));
  } else {
    const json extra{
        {"note", "split heads, cuBLASLt QK^T, softmax, cuBLASLt PV, merge; backward from saved P"}};
    add(
        "forward", "composite",
        [&](int i) {
          Set& x = set_of(i);
          composite_forward(x.qkv.as<bf16>(), x.out.as<bf16>());
        },
        fwd, extra);
    add(
        "backward", "composite",
        [&](int i) { composite_backward(set_of(i).dout.as<bf16>(), dqkv.as<bf16>()); }, bwd, extra);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

json bench_attention(const Options& opt) {
  const std::vector<Shape> shapes = shapes_for(opt);
  const Ceilings c = measure_ceilings(opt);
  std::cout << c.to_json().dump() << std::endl;
  std::printf("attention: %s; cuDNN %s\n", c.describe().c_str(), cudnn_version());
  Report report("attention");
  for (const Shape& sh : shapes) {
    if (opt.budget_s > 0 && seconds_since_start() > opt.budget_s) {
      report.add(
          error_row("attention", sh.str(), "forward+backward", "all", "skipped: past --budget"));
      continue;
    }
    try {
      run_shape(sh, opt, c, report);
    } catch (const std::exception& e) {
      report.add(error_row("attention", sh.str(), "forward+backward", "all", e.what()));
    }
  }
  report.add_ratios();
  report.print_table();
  return json{{"bench", "attention"}, {"ceilings", c.to_json()}, {"results", report.rows()}};
}

}  // namespace dino::bench
