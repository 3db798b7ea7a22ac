// `dino bench layernorm`: our LayerNorm (kernels/cuda/layernorm.cu: fp32 residual stream in,
// bf16 out, fp32 statistics) against cuDNN's norm operations (benchmarks/cudnn/cudnn_layernorm.cpp)
// and a composite (a statistics kernel, then a normalise kernel; backward: per-row sums, dx,
// then block-partial column sums for dweight/dbias), plus our fused residual-add + LayerNorm.
//
// Minimum bytes (ARCHITECTURE §5): forward reads x (4NC), weight and bias (8C) and writes y (2NC),
// mean and rstd (8N); the residual form also reads the bf16 branch (2NC) and writes the new
// fp32 stream (4NC); backward reads dy (2NC), x (4NC), mean, rstd (8N), weight (4C) and writes
// dx (4NC), dweight and dbias (8C). No FLOPs are counted: the op is memory-bound by ~100x.
// If cuDNN has no engine for the mixed f32-in / bf16-out form, its row is all-f32
// activations instead (its bytes counted for the types it ran), and says so in "io".
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
constexpr float kEps = 1e-6f;  // ViT's LayerNorm eps (ARCHITECTURE §4)

struct Shape {
  int N, C;
  std::string label;
  std::string str() const { return str_cat("N=", N, " C=", C); }
};

std::vector<Shape> shapes_for(const Options& opt) {
  std::vector<Shape> s;
  // The op table's layer_norm cases of the set (testing/op_cases_nn.cpp): N, C.
  for (const testing::OpCase* c : testing::bench_cases({"layer_norm"}, opt.shapes))
    s.push_back({int(c->dims[0]), int(c->dims[1]), c->label});
  for (const std::string& c : opt.custom) {
    Shape x{0, 0, "custom"};
    char sep;
    std::istringstream in(c);
    DINO_CHECK((in >> x.N >> sep >> x.C) && x.N > 0 && x.C > 0,
               "[bench] layernorm --shape wants N,C, got '", c, "'");
    s.push_back(x);
  }
  DINO_CHECK(!s.empty(), "[bench] layernorm: no shapes for --shapes '", opt.shapes, "' (vit, all)");
  return s;
}

struct Set {
  DeviceBuffer x, dout, mean, rstd, dout_f32;
};

void run_shape(const Shape& sh, const Options& opt, const Ceilings& c, Report& report) {
  const int N = sh.N, C = sh.C;
  const int64_t nc = int64_t(N) * C;
  const std::string shape = sh.str();
  const cudaStream_t s = stream();
  const int nsets = rotation_sets(size_t(6 * nc + 8 * N), c.l2_bytes);
  std::vector<Set> sets(static_cast<size_t>(nsets));
  for (int i = 0; i < nsets; ++i) {
    Set& x = sets[size_t(i)];
    x.x = DeviceBuffer(size_t(4 * nc));
    x.dout = DeviceBuffer(size_t(2 * nc));
    x.mean = DeviceBuffer(size_t(4 * N));
    x.rstd = DeviceBuffer(size_t(4 * N));
    fill_uniform_f32(x.x.as<float>(), nc, 300 + i, -2.f, 2.f);
    fill_uniform_bf16(x.dout.as(), nc, 400 + i, -1.f, 1.f);
  }
  auto set_of = [&](int i) -> Set& { return sets[size_t(i % nsets)]; };
  DeviceBuffer w(size_t(4 * C)), b(size_t(4 * C)), y(size_t(2 * nc)), x_out(size_t(4 * nc)),
      dx(size_t(4 * nc)), dw(size_t(4 * C)), db(size_t(4 * C)), sums(size_t(8 * N)),
      partial(size_t(4 * composite::ln_params_partial_floats(N, C)));
  fill_uniform_f32(w.as<float>(), C, 500, 0.5f, 1.5f);
  fill_uniform_f32(b.as<float>(), C, 501, -0.5f, 0.5f);
  const double nd = double(nc);
  const Work fwd{0, 4 * nd + 2 * nd + 8.0 * N + 8.0 * C};
  const Work res{0, 4 * nd + 2 * nd + 4 * nd + 2 * nd + 8.0 * N + 8.0 * C};
  const Work bwd{0, 2 * nd + 4 * nd + 8.0 * N + 4.0 * C + 4 * nd + 8.0 * C};

  // Every set's statistics from a forward, for the backward timings.
  for (Set& x : sets) {
    composite::ln_stats(x.mean.as<float>(), x.rstd.as<float>(), x.x.as<float>(), N, C, kEps, s);
  }

  // ---- cross-check on set 0 against the composite ---------------------------------------------
  json checks;
  Set& s0 = sets[0];
  DeviceBuffer cy(size_t(2 * nc)), cmean(size_t(4 * N)), crstd(size_t(4 * N)), cdx(size_t(4 * nc)),
      cdw(size_t(4 * C)), cdb(size_t(4 * C)), m2(size_t(4 * N)), r2(size_t(4 * N));
  if (opt.check) {
    composite::ln_stats(cmean.as<float>(), crstd.as<float>(), s0.x.as<float>(), N, C, kEps, s);
    composite::ln_normalize(cy.as(), s0.x.as<float>(), cmean.as<float>(), crstd.as<float>(),
                            w.as<float>(), b.as<float>(), N, C, s);
    composite::ln_backward_rowsums(sums.as<float>(), s0.dout.as(), s0.x.as<float>(),
                                   cmean.as<float>(), crstd.as<float>(), w.as<float>(), N, C, s);
    composite::ln_backward_dx(cdx.as<float>(), s0.dout.as(), s0.x.as<float>(), cmean.as<float>(),
                              crstd.as<float>(), w.as<float>(), sums.as<float>(), N, C, s);
    composite::ln_backward_params(cdw.as<float>(), cdb.as<float>(), partial.as<float>(),
                                  s0.dout.as(), s0.x.as<float>(), cmean.as<float>(),
                                  crstd.as<float>(), N, C, s);
    auto check = [&](const char* impl, const std::function<void()>& f,
                     const std::function<void()>& g) {
      try {
        f();
        checks[impl]["forward"] = rel_diff(y.as(), true, cy.as(), true, nc);
        checks[impl]["mean"] = rel_diff(m2.as(), false, cmean.as(), false, N);
        checks[impl]["rstd"] = rel_diff(r2.as(), false, crstd.as(), false, N);
        g();
        checks[impl]["backward"] = rel_diff(dx.as(), false, cdx.as(), false, nc);
        checks[impl]["dweight"] = rel_diff(dw.as(), false, cdw.as(), false, C);
        checks[impl]["dbias"] = rel_diff(db.as(), false, cdb.as(), false, C);
      } catch (const std::exception& e) {
        checks[impl]["error"] = e.what();
      }
    };
    check(
        "ours",
        [&] {
          kc::layernorm_forward(y.as<bf16>(), m2.as<float>(), r2.as<float>(), s0.x.as<float>(),
                                w.as<float>(), b.as<float>(), N, C, kEps, s);
        },
        [&] {
          kc::layernorm_backward(dx.as<float>(), dw.as<float>(), db.as<float>(), s0.dout.as<bf16>(),
                                 s0.x.as<float>(), m2.as<float>(), r2.as<float>(), w.as<float>(), N,
                                 C, s);
        });
    if (cudnn_available()) {
      check(
          "cudnn",
          [&] {
            cudnn_layernorm_forward(y.as<bf16>(), m2.as<float>(), r2.as<float>(), s0.x.as<float>(),
                                    w.as<float>(), b.as<float>(), N, C, kEps, s);
          },
          [&] {
            cudnn_layernorm_backward(dx.as<float>(), dw.as<float>(), db.as<float>(),
                                     s0.dout.as<bf16>(), s0.x.as<float>(), m2.as<float>(),
                                     r2.as<float>(), w.as<float>(), N, C, s);
          });
    }
    CUDA_CHECK(cudaStreamSynchronize(s));
  }

  auto add = [&](const char* pass, const char* impl, const std::function<void(int)>& body,
                 const Work& work, const json& extra) {
    try {
      const Timing t = time_reps(opt.warmup, opt.reps, body);
      json row = measurement("layernorm", shape, pass, impl, t, work, c);
      row["label"] = sh.label;
      row["N"] = N, row["C"] = C, row["input_sets"] = nsets;
      const std::string key = std::string(pass) == "backward" ? "backward" : "forward";
      if (std::string(pass) != "forward-residual" && checks.contains(impl)) {
        const json& ck = checks[impl];
        if (ck.contains(key)) row["rel_diff"] = ck[key], row["check_ref"] = "composite";
        for (const char* k : {"mean", "rstd", "dweight", "dbias"})
          if (ck.contains(k) &&
              ((key == "forward") == (std::string(k) == "mean" || std::string(k) == "rstd")))
            row[std::string("rel_diff_") + k] = ck[k];
        if (ck.contains("error")) row["check_error"] = ck["error"];
      }
      row.update(extra);
      report.add(row);
    } catch (const std::exception& e) {
      report.add(error_row("layernorm", shape, pass, impl, e.what()));
    }
  };

  // ---- ours ------------------------------------------------------------------------------------
  add(
      "forward", "ours",
      [&](int i) {
        Set& x = set_of(i);
        kc::layernorm_forward(y.as<bf16>(), x.mean.as<float>(), x.rstd.as<float>(), x.x.as<float>(),
                              w.as<float>(), b.as<float>(), N, C, kEps, s);
      },
      fwd, json::object());
  add(
      "forward-residual", "ours",
      [&](int i) {
        Set& x = set_of(i);
        kc::residual_layernorm_forward(x_out.as<float>(), y.as<bf16>(), x.mean.as<float>(),
                                       x.rstd.as<float>(), x.x.as<float>(), x.dout.as<bf16>(),
                                       w.as<float>(), b.as<float>(), N, C, kEps, s);
      },
      res, json{{"note", "x_out = x + branch (bf16), y = LN(x_out)"}});
  add(
      "backward", "ours",
      [&](int i) {
        Set& x = set_of(i);
        kc::layernorm_backward(dx.as<float>(), dw.as<float>(), db.as<float>(), x.dout.as<bf16>(),
                               x.x.as<float>(), x.mean.as<float>(), x.rstd.as<float>(),
                               w.as<float>(), N, C, s);
      },
      bwd, json::object());

  // ---- cuDNN: the mixed form first, else all-f32 activations ------------------------------------
  if (!cudnn_available()) {
    for (const char* pass : {"forward", "backward"})
      report.add(error_row("layernorm", shape, pass, "cudnn", cudnn_version()));
  } else {
    DeviceBuffer y32;
    for (const bool backward : {false, true}) {
      const char* pass = backward ? "backward" : "forward";
      bool mixed = true;
      std::string why;
      auto run = [&](int i) {
        Set& x = set_of(i);
        if (!backward && mixed)
          cudnn_layernorm_forward(y.as<bf16>(), x.mean.as<float>(), x.rstd.as<float>(),
                                  x.x.as<float>(), w.as<float>(), b.as<float>(), N, C, kEps, s);
        else if (!backward)
          cudnn_layernorm_forward_io(y32.as(), CudnnIo::f32, x.mean.as<float>(), x.rstd.as<float>(),
                                     x.x.as(), CudnnIo::f32, w.as<float>(), b.as<float>(), N, C,
                                     kEps, s);
        else if (mixed)
          cudnn_layernorm_backward(dx.as<float>(), dw.as<float>(), db.as<float>(),
                                   x.dout.as<bf16>(), x.x.as<float>(), x.mean.as<float>(),
                                   x.rstd.as<float>(), w.as<float>(), N, C, s);
        else
          cudnn_layernorm_backward_io(dx.as(), CudnnIo::f32, dw.as<float>(), db.as<float>(),
                                      x.dout_f32.as(), CudnnIo::f32, x.x.as(), CudnnIo::f32,
                                      x.mean.as<float>(), x.rstd.as<float>(), w.as<float>(), N, C,
                                      s);
      };
      try {
        run(0);  // builds (and caches) the plan outside the timing
      } catch (const std::exception& e) {
        why = e.what();
        mixed = false;
        try {
          if (!backward) {
            y32 = DeviceBuffer(size_t(4 * nc));
          } else {
            for (int i = 0; i < nsets; ++i) {
              sets[size_t(i)].dout_f32 = DeviceBuffer(size_t(4 * nc));
              fill_uniform_f32(sets[size_t(i)].dout_f32.as<float>(), nc, 600 + i, -1.f, 1.f);
            }
          }
          run(0);
        } catch (const std::exception& e2) {
          report.add(
              error_row("layernorm", shape, pass, "cudnn", str_cat(why, "; all-f32: ", e2.what())));
          continue;
        }
      }
      const CudnnPlanInfo p = cudnn_last_plan();
      json extra{{"cudnn_version", cudnn_version()},
                 {"engine", p.engine},
                 {"workspace_bytes", p.workspace_bytes},
                 {"plan_build_s", p.build_seconds},
                 {"io", mixed ? "as ours (x f32, y/dy bf16, dx f32)"
                              : "all f32 (no engine for the mixed form)"}};
      if (!mixed) extra["mixed_form_error"] = why.substr(0, 300);
      Work w2 = backward ? bwd : fwd;
      if (!mixed) w2.bytes += 2 * nd;  // y, or dy, in f32
      add(pass, "cudnn", run, w2, extra);
    }
  }

  // ---- composite -----------------------------------------------------------------------------
  add(
      "forward", "composite",
      [&](int i) {
        Set& x = set_of(i);
        composite::ln_stats(x.mean.as<float>(), x.rstd.as<float>(), x.x.as<float>(), N, C, kEps, s);
        composite::ln_normalize(y.as(), x.x.as<float>(), x.mean.as<float>(), x.rstd.as<float>(),
                                w.as<float>(), b.as<float>(), N, C, s);
      },
      fwd, json{{"note", "stats kernel + normalise kernel"}});
  add(
      "backward", "composite",
      [&](int i) {
        Set& x = set_of(i);
        composite::ln_backward_rowsums(sums.as<float>(), x.dout.as(), x.x.as<float>(),
                                       x.mean.as<float>(), x.rstd.as<float>(), w.as<float>(), N, C,
                                       s);
        composite::ln_backward_dx(dx.as<float>(), x.dout.as(), x.x.as<float>(), x.mean.as<float>(),
                                  x.rstd.as<float>(), w.as<float>(), sums.as<float>(), N, C, s);
        composite::ln_backward_params(dw.as<float>(), db.as<float>(), partial.as<float>(),
                                      x.dout.as(), x.x.as<float>(), x.mean.as<float>(),
                                      x.rstd.as<float>(), N, C, s);
      },
      bwd, json{{"note", "row sums + dx + column partials and their reduction"}});
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

json bench_layernorm(const Options& opt) {
  const std::vector<Shape> shapes = shapes_for(opt);
  const Ceilings c = measure_ceilings(opt);
  std::cout << c.to_json().dump() << std::endl;
  std::printf("layernorm: %s; cuDNN %s\n", c.describe().c_str(), cudnn_version());
  Report report("layernorm");
  for (const Shape& sh : shapes) {
    if (opt.budget_s > 0 && seconds_since_start() > opt.budget_s) {
      report.add(
          error_row("layernorm", sh.str(), "forward+backward", "all", "skipped: past --budget"));
      continue;
    }
    try {
      run_shape(sh, opt, c, report);
    } catch (const std::exception& e) {
      report.add(error_row("layernorm", sh.str(), "forward+backward", "all", e.what()));
    }
  }
  report.add_ratios();
  report.print_table();
  return json{{"bench", "layernorm"}, {"ceilings", c.to_json()}, {"results", report.rows()}};
}

}  // namespace dino::bench
