// The op table's runner (testing/cuda/op_check.h): one case on the CUDA backend and on the CPU in
// float64, compared under the case's tolerance rule.
#include "testing/cuda/op_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/autograd.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/runtime.h"
#include "testing/bf16_oracle.h"

namespace dino::testing {

namespace cu = ::dino::kernels::cuda;

namespace {

float round_bf16(float x) { return float(bf16(x)); }

std::vector<double> host_doubles(const Tensor& t) {
  const std::vector<float> f = t.to_vector();
  return {f.begin(), f.end()};
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Compares one result; an input the output does not depend on has a gradient on neither side.
// composite: the composite reference's value of this result, when the case's rule has one.
void compare_result(CaseCheck& out, const std::string& what, const Tensor& got, const Tensor& ref,
                    const std::vector<double>* composite) {
  if (got.defined() != ref.defined()) {
    out.error += str_cat(what, ": defined on the ", got.defined() ? "GPU" : "CPU", " only; ");
    return;
  }
  if (!ref.defined()) return;
  if (got.shape() != ref.shape()) {
    out.error += str_cat(what, ": shape ", shape_str(got.shape()), " vs reference ",
                         shape_str(ref.shape()), "; ");
    return;
  }
  const std::vector<double> r = host_doubles(ref);
  double composite_err = 0;
  if (out.c->tol.composite) {
    if (!composite || composite->size() != r.size()) {
      out.error += str_cat(what, ": the composite reference has no value of this size; ");
      return;
    }
    composite_err = compare(*composite, r).rel_l2;
  }
  const Bound b = bound_for(out.c->tol, got.dtype(), r, composite_err);
  const Comparison cmp = compare(host_doubles(got), r);
  const bool pass = cmp.non_finite == 0 && cmp.rel_l2 <= b.tol;
  out.results.push_back({str_cat(what, " ", dtype_name(got.dtype())), cmp.rel_l2, b.tol,
                         cmp.non_finite, pass, pass ? "" : cmp.worst, b.rule});
}

// The case on the GPU from the given values: its inputs (with their gradients) and its output.
// The upstream gradient, in the output's dtype (so rounded to bf16 there), is drawn from rng
// after the forward when `upstream` is empty, and reused as given otherwise.
struct GpuRun {
  std::vector<Tensor> in;
  Tensor out;
};
GpuRun run_gpu(const OpCase& c, const std::vector<std::vector<float>>& values, Rng& rng,
               std::vector<float>& upstream) {
  cu::set_poison_allocations(true);
  struct Unpoison {
    ~Unpoison() { cu::set_poison_allocations(false); }
  } unpoison;
  GpuRun r;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t =
        Tensor::from_vector(values[i], c.inputs[i].shape).to(Device::cuda).to(c.inputs[i].dtype);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    r.in.push_back(t);
  }
  r.out = c.fn(r.in);
  if (r.out.device() != Device::cuda) return r;
  if (upstream.empty()) {
    upstream.resize(size_t(r.out.numel()));
    for (float& x : upstream) x = float(rng.normal());
    if (r.out.dtype() == DType::bf16)
      for (float& x : upstream) x = round_bf16(x);
  }
  if (r.out.requires_grad())
    r.out.backward(Tensor::from_vector(upstream, r.out.shape()).to(Device::cuda).to(r.out.dtype()));
  cu::synchronize();
  return r;
}

// The number of elements whose bits differ between two runs' results (a result missing from
// one run counts as all of them).
size_t differing_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return size_t(std::max(a.numel(), b.numel()));
  if (!a.defined()) return 0;
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  if (x.size() != y.size()) return std::max(x.size(), y.size());
  size_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
  return n;
}

void run(CaseCheck& out, uint64_t seed) {
  const OpCase& c = *out.c;
  Rng rng(seed ? seed : case_seed(c));
  const std::vector<std::vector<float>> values = case_values(c, rng);

  std::vector<float> upstream;
  const GpuRun gpu = run_gpu(c, values, rng, upstream);
  if (gpu.out.device() != Device::cuda) {
    out.error = "the output is not on the GPU";
    return;
  }
  if (gpu.out.dtype() != c.out_dtype)
    out.error += str_cat("output dtype ", dtype_name(gpu.out.dtype()), ", the policy says ",
                         dtype_name(c.out_dtype), "; ");
  const bool any_grad = gpu.out.requires_grad();

  std::vector<Tensor> cpu_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = Tensor::from_vector(widen(values[i]), c.inputs[i].shape);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    cpu_in.push_back(t);
  }
  Tensor cpu_out = c.fn(cpu_in);
  if (any_grad) cpu_out.backward(Tensor::from_vector(widen(upstream), cpu_out.shape()));

  CompositeResult comp;
  if (c.tol.composite) {
    std::vector<std::vector<double>> in;
    for (const auto& v : values) in.push_back(widen(v));
    comp = c.tol.composite(in, widen(upstream));
    comp.grads.resize(c.inputs.size());
  }
  auto composite_of = [&](int i) -> const std::vector<double>* {
    if (!c.tol.composite) return nullptr;
    return i < 0 ? &comp.out : &comp.grads[size_t(i)];
  };
  compare_result(out, "output", gpu.out, cpu_out, composite_of(-1));
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.inputs[i].grad)
      compare_result(out, str_cat("grad ", i), gpu.in[i].grad(), cpu_in[i].grad(),
                     composite_of(int(i)));

  if (c.deterministic) {
    const GpuRun again = run_gpu(c, values, rng, upstream);
    size_t differ = differing_bits(gpu.out, again.out), total = size_t(gpu.out.numel());
    for (size_t i = 0; i < c.inputs.size(); ++i)
      if (c.inputs[i].grad) {
        differ += differing_bits(gpu.in[i].grad(), again.in[i].grad());
        total += size_t(gpu.in[i].grad().defined() ? gpu.in[i].grad().numel() : 0);
      }
    const bool pass = differ == 0;
    out.results.push_back({"rerun (bits)", total ? double(differ) / double(total) : 0.0, 0.0, 0,
                           pass, pass ? "" : str_cat(differ, " of ", total, " elements differ"),
                           "bit-identical"});
  }
}

}  // namespace

bool CaseCheck::pass() const {
  if (!error.empty() || results.empty()) return false;
  for (const Result& r : results)
    if (!r.pass) return false;
  return true;
}

std::string CaseCheck::describe_failures() const {
  std::string s;
  if (!error.empty()) s += c->name + ": " + error + "\n";
  if (results.empty() && error.empty()) s += c->name + ": nothing compared\n";
  for (const Result& r : results)
    if (!r.pass)
      s += str_cat(c->name, ": ", r.what, " rel L2 error ", r.rel_err, " (tolerance ", r.tol, "), ",
                   r.non_finite, " non-finite; worst ", r.worst, "\n");
  return s;
}

CaseCheck check_case(const OpCase& c, uint64_t seed) {
  CaseCheck out;
  out.c = &c;
  try {
    run(out, seed);
  } catch (const std::exception& e) {
    out.error += e.what();
  }
  return out;
}

}  // namespace dino::testing
