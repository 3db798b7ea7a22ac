// `dino bench gemm`: the ViT-S/16 and DINO-head products through our cuBLASLt wrapper
// (kernels/cuda/gemm.cu: the epilogues training uses) and through a plain cuBLASLt call
// (benchmarks/bench_common.cpp: heuristic's first algorithm, no epilogue), each pass of a
// Linear layer: forward y = x W^T + b (bf16 out, bias epilogue; the last layer fp32 logits, no
// bias), input gradient dx = dy W, weight gradient dW = dy^T x with db (fp32 out; db from our
// column-sum kernels; the last layer has no bias, so no db). Rows: 64 x 197 tokens (one 224-px view
// of a batch of 64) for the blocks, 64 x 10 crops for the head.
//
// FLOPs 2·rows·in·out per product. Minimum bytes: the two operands once, the output once (and
// the bias or its gradient). Operands rotate over enough sets to stream from memory.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "benchmarks/bench.h"
#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"

namespace dino::bench {

namespace {

namespace kc = dino::kernels::cuda;
using bf16 = __nv_bfloat16;

struct Layer {
  std::string name;
  int64_t rows, in, out;
  bool bias = true, logits_f32 = false;
  std::string str() const { return str_cat(name, " ", rows, "x", in, "->", out); }
};

std::vector<Layer> layers_for(const Options& opt) {
  std::vector<Layer> s;
  // The op table's GEMM cases of the set (testing/op_cases_linear.cpp): rows, in, out; a
  // Linear with its bias, or the head's last layer (weight_norm_linear: no bias, f32 logits).
  for (const testing::OpCase* c :
       testing::bench_cases({"linear", "weight_norm_linear"}, opt.shapes)) {
    const bool last = c->op == "weight_norm_linear";
    s.push_back({c->label, c->dims[0], c->dims[1], c->dims[2], !last, last});
  }
  for (const std::string& c : opt.custom) {
    Layer x{"custom", 0, 0, 0};
    char sep;
    std::istringstream in(c);
    DINO_CHECK((in >> x.rows >> sep >> x.in >> sep >> x.out) && x.rows > 0 && x.in > 0 && x.out > 0,
               "[bench] gemm --shape wants rows,in,out, got '", c, "'");
    s.push_back(x);
  }
  DINO_CHECK(!s.empty(), "[bench] gemm: no shapes for --shapes '", opt.shapes, "' (vit, all)");
  return s;
}

struct Set {
  DeviceBuffer x, w, dy;
};

void run_layer(const Layer& L, const Options& opt, const Ceilings& c, Report& report) {
  const int64_t R = L.rows, I = L.in, O = L.out;
  const std::string shape = L.str();
  const cudaStream_t s = stream();
  const int nsets = rotation_sets(size_t(2 * (R * I + O * I + R * O)), c.l2_bytes);
  std::vector<Set> sets(static_cast<size_t>(nsets));
  for (int i = 0; i < nsets; ++i) {
    Set& x = sets[size_t(i)];
    x.x = DeviceBuffer(size_t(2 * R * I));
    x.w = DeviceBuffer(size_t(2 * O * I));
    x.dy = DeviceBuffer(size_t(2 * R * O));
    fill_uniform_bf16(x.x.as(), R * I, 1000 + i, -1.f, 1.f);
    fill_uniform_bf16(x.w.as(), O * I, 1100 + i, -0.05f, 0.05f);
    fill_uniform_bf16(x.dy.as(), R * O, 1200 + i, -1.f, 1.f);
  }
  auto set_of = [&](int i) -> Set& { return sets[size_t(i % nsets)]; };
  const size_t ybytes = size_t((L.logits_f32 ? 4 : 2) * R * O);
  DeviceBuffer y(ybytes), y2(ybytes), dx(size_t(2 * R * I)), dx2(size_t(2 * R * I)),
      dw(size_t(4 * O * I)), dw2(size_t(4 * O * I)), bias(size_t(2 * O)), db(size_t(4 * O));
  fill_uniform_bf16(bias.as(), O, 1300, -0.1f, 0.1f);
  const double flops = 2.0 * double(R) * I * O;
  const Work fwd{flops, double(2 * R * I + 2 * O * I + (L.bias ? 2 * O : 0)) + double(ybytes)};
  const Work dgrad{flops, double(2 * R * O + 2 * O * I + 2 * R * I)};
  const Work wgrad{flops, double(2 * R * O + 2 * R * I + 4 * O * I + (L.bias ? 4 * O : 0))};

  // The three products through our wrapper (as training calls it) and the plain call.
  auto ours_fwd = [&](const Set& x, void* out, bool epilogue) {
    const bool with_bias = epilogue && L.bias;
    kc::gemm(out, !L.logits_f32, x.x.as<bf16>(), x.w.as<bf16>(), with_bias ? bias.as() : nullptr,
             with_bias ? kc::GemmEpilogue::bias : kc::GemmEpilogue::none, R, O, I, false, true, 1,
             0, 0, 0, s);
  };
  auto ours_dgrad = [&](const Set& x, void* out) {
    kc::gemm(out, true, x.dy.as<bf16>(), x.w.as<bf16>(), nullptr, kc::GemmEpilogue::none, R, I, O,
             false, false, 1, 0, 0, 0, s);
  };
  auto ours_wgrad = [&](const Set& x, void* out, bool epilogue) {
    kc::gemm(out, false, x.dy.as<bf16>(), x.x.as<bf16>(), epilogue ? db.as() : nullptr,
             epilogue ? kc::GemmEpilogue::bias_grad : kc::GemmEpilogue::none, O, I, R, true, false,
             1, 0, 0, 0, s);
  };
  auto plain_fwd = [&](const Set& x, void* out) {
    lt_matmul(out, !L.logits_f32, x.x.as(), x.w.as(), R, O, I, false, true, 1, 0, 0, 0, 1.f);
  };
  auto plain_dgrad = [&](const Set& x, void* out) {
    lt_matmul(out, true, x.dy.as(), x.w.as(), R, I, O, false, false, 1, 0, 0, 0, 1.f);
  };
  auto plain_wgrad = [&](const Set& x, void* out) {
    lt_matmul(out, false, x.dy.as(), x.x.as(), O, I, R, true, false, 1, 0, 0, 0, 1.f);
  };

  // Cross-check: our wrapper without epilogues against the plain call, on set 0.
  json ck;
  if (opt.check) {
    try {
      ours_fwd(sets[0], y.as(), false);
      plain_fwd(sets[0], y2.as());
      ck["forward"] = rel_diff(y.as(), !L.logits_f32, y2.as(), !L.logits_f32, R * O);
      ours_dgrad(sets[0], dx.as());
      plain_dgrad(sets[0], dx2.as());
      ck["dgrad"] = rel_diff(dx.as(), true, dx2.as(), true, R * I);
      ours_wgrad(sets[0], dw.as(), false);
      plain_wgrad(sets[0], dw2.as());
      ck["wgrad"] = rel_diff(dw.as(), false, dw2.as(), false, O * I);
    } catch (const std::exception& e) {
      ck["error"] = e.what();
    }
  }

  auto add = [&](const char* pass, const char* impl, const std::function<void(int)>& body,
                 const Work& w, const char* note) {
    try {
      const Timing t = time_reps(opt.warmup, opt.reps, body);
      json row = measurement("gemm", shape, pass, impl, t, w, c);
      row["layer"] = L.name, row["rows"] = R, row["in"] = I, row["out"] = O,
      row["input_sets"] = nsets;
      row["note"] = note;
      if (std::string(impl) == "ours" && ck.contains(pass))
        row["rel_diff"] = ck[pass], row["check_ref"] = "cublaslt (no epilogue)";
      if (std::string(impl) == "ours" && ck.contains("error")) row["check_error"] = ck["error"];
      report.add(row);
    } catch (const std::exception& e) {
      report.add(error_row("gemm", shape, pass, impl, e.what()));
    }
  };
  add(
      "forward", "ours", [&](int i) { ours_fwd(set_of(i), y.as(), true); }, fwd,
      L.bias ? "bias epilogue, bf16 out" : "fp32 logits, no bias");
  add(
      "forward", "cublaslt", [&](int i) { plain_fwd(set_of(i), y2.as()); }, fwd, "no epilogue");
  add(
      "dgrad", "ours", [&](int i) { ours_dgrad(set_of(i), dx.as()); }, dgrad, "bf16 out");
  add(
      "dgrad", "cublaslt", [&](int i) { plain_dgrad(set_of(i), dx2.as()); }, dgrad, "bf16 out");
  add(
      "wgrad", "ours", [&](int i) { ours_wgrad(set_of(i), dw.as(), L.bias); }, wgrad,
      L.bias ? "fp32 dW + bias gradient (column-sum kernels)" : "fp32 dW, no bias");
  add(
      "wgrad", "cublaslt", [&](int i) { plain_wgrad(set_of(i), dw2.as()); }, wgrad,
      "fp32 dW, no epilogue");
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

json bench_gemm(const Options& opt) {
  const std::vector<Layer> layers = layers_for(opt);
  const Ceilings c = measure_ceilings(opt);
  std::cout << c.to_json().dump() << std::endl;
  std::printf("gemm: %s\n", c.describe().c_str());
  Report report("gemm");
  for (const Layer& L : layers) {
    if (opt.budget_s > 0 && seconds_since_start() > opt.budget_s) {
      report.add(error_row("gemm", L.str(), "all", "all", "skipped: past --budget"));
      continue;
    }
    try {
      run_layer(L, opt, c, report);
    } catch (const std::exception& e) {
      report.add(error_row("gemm", L.str(), "all", "all", e.what()));
    }
  }
  report.add_ratios();
  report.print_table();
  return json{{"bench", "gemm"}, {"ceilings", c.to_json()}, {"results", report.rows()}};
}

}  // namespace dino::bench
