// The op table's runner (testing/cuda/op_check.h): one case on the CUDA backend and on the CPU in
// float64, compared under the case's tolerance rule.
#include "testing/cuda/op_check.h"

#include <cmath>
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
void compare_result(CaseCheck& out, const std::string& what, const Tensor& got, const Tensor& ref) {
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
  const Tolerance& t = out.c->tol;
  const double tol =
      got.dtype() == DType::bf16 ? t.bf16_mult * bf16_output_error(r) + t.bf16_floor : t.f32;
  const Comparison cmp = compare(host_doubles(got), r);
  const bool pass = cmp.non_finite == 0 && cmp.rel_l2 <= tol;
  out.results.push_back({str_cat(what, " ", dtype_name(got.dtype())), cmp.rel_l2, tol,
                         cmp.non_finite, pass, pass ? "" : cmp.worst});
}

void run(CaseCheck& out, uint64_t seed) {
  const OpCase& c = *out.c;
  Rng rng(seed ? seed : case_seed(c));
  std::vector<std::vector<float>> values;
  for (const OpInput& in : c.inputs) {
    std::vector<float> v(size_t(shape_numel(in.shape)));
    for (float& x : v) x = float(in.shift + in.scale * rng.normal());
    if (in.bf16_operand || in.dtype == DType::bf16)
      for (float& x : v) x = round_bf16(x);
    values.push_back(std::move(v));
  }

  cu::set_poison_allocations(true);
  struct Unpoison {
    ~Unpoison() { cu::set_poison_allocations(false); }
  } unpoison;
  std::vector<Tensor> gpu_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t =
        Tensor::from_vector(values[i], c.inputs[i].shape).to(Device::cuda).to(c.inputs[i].dtype);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    gpu_in.push_back(t);
  }
  Tensor gpu_out = c.fn(gpu_in);
  if (gpu_out.device() != Device::cuda) {
    out.error = "the output is not on the GPU";
    return;
  }
  if (gpu_out.dtype() != c.out_dtype)
    out.error += str_cat("output dtype ", dtype_name(gpu_out.dtype()), ", the policy says ",
                         dtype_name(c.out_dtype), "; ");
  // The upstream gradient, in the output's dtype on the GPU (so rounded to bf16 there).
  std::vector<float> upstream(size_t(gpu_out.numel()));
  for (float& x : upstream) x = float(rng.normal());
  if (gpu_out.dtype() == DType::bf16)
    for (float& x : upstream) x = round_bf16(x);
  const bool any_grad = gpu_out.requires_grad();
  if (any_grad)
    gpu_out.backward(
        Tensor::from_vector(upstream, gpu_out.shape()).to(Device::cuda).to(gpu_out.dtype()));
  cu::synchronize();
  cu::set_poison_allocations(false);

  std::vector<Tensor> cpu_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = Tensor::from_vector(widen(values[i]), c.inputs[i].shape);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    cpu_in.push_back(t);
  }
  Tensor cpu_out = c.fn(cpu_in);
  if (any_grad) cpu_out.backward(Tensor::from_vector(widen(upstream), cpu_out.shape()));

  compare_result(out, "output", gpu_out, cpu_out);
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.inputs[i].grad)
      compare_result(out, str_cat("grad ", i), gpu_in[i].grad(), cpu_in[i].grad());
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
