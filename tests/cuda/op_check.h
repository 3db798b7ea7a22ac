#pragma once
// One harness for every op on the CUDA backend (after ggml's test-backend-ops): the same
// function of Tensors runs on the CPU in float64 (the reference) and on the GPU under the
// device's precision policy (ARCHITECTURE §3), forward and backward, on fresh random inputs, with
// every fresh CUDA allocation poisoned with NaN (an element an op forgets to write shows).
// The output and every input gradient are compared with ||got - ref|| / ||ref|| (ARCHITECTURE §6);
// the GPU output's dtype is checked against the policy the case states.
//
//   check_op({"layer_norm (197, 384)",
//             {{{197, 384}}, {{384}}, {{384}}},           // x, weight, bias: f32 on the GPU
//             [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6); },
//             DType::bf16},                                // the GPU writes bf16
//            seed);
#include <functional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "tests/cuda/test_util.h"

namespace dino::test {

struct OpInput {
  Shape shape;
  DType cuda_dtype = DType::f32;    // what the op gets on the GPU: bf16 activations, f32 params
  bool grad = true;                 // requires_grad on both sides
  double scale = 1.0, shift = 0.0;  // values: shift + scale * N(0, 1), fresh per case
  // The GPU reads this f32 input as bf16 (a GEMM operand such as a Linear weight or the
  // images under patchify): its values are rounded to bf16 for both sides, so the reference
  // sees what the device multiplies. bf16 inputs are always rounded.
  bool bf16_operand = false;
};

struct OpCase {
  std::string name;  // the op and its shapes, e.g. "linear x (37, 33) w (65, 33)"
  std::vector<OpInput> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;  // the same code on both devices
  DType out_dtype = DType::f32;  // the dtype the GPU output must have (ARCHITECTURE §3)
  // Tolerances on the relative L2 error: f32 results (output or gradient) f32_tol; bf16 results
  // bf16_mult x the error of merely rounding the exact result to bf16, plus bf16_floor.
  double f32_tol = 1e-5;
  double bf16_mult = 2.0, bf16_floor = 1e-3;
};

inline std::vector<double> host_doubles(const Tensor& t) {
  const std::vector<float> f = t.to_vector();
  return std::vector<double>(f.begin(), f.end());
}

inline void expect_tensor_close(const OpCase& c, const std::string& what, const Tensor& got,
                                const Tensor& ref) {
  INFO(c.name << ": " << what << " " << got.str() << " vs reference " << ref.str());
  // An input the output does not depend on has no gradient on either device.
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  REQUIRE(got.shape() == ref.shape());
  const std::vector<double> r = host_doubles(ref);
  const double tol =
      got.dtype() == DType::bf16 ? c.bf16_mult * bf16_output_error(r) + c.bf16_floor : c.f32_tol;
  expect_close(c.name + ": " + what, host_doubles(got), r, tol);
}

inline void check_op(const OpCase& c, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<float>> values;
  for (const OpInput& in : c.inputs) {
    std::vector<float> v = random_floats(rng, size_t(shape_numel(in.shape)), in.scale, in.shift);
    if (in.bf16_operand || in.cuda_dtype == DType::bf16)
      for (float& x : v) x = round_bf16(x);
    values.push_back(std::move(v));
  }

  cu::set_poison_allocations(true);
  std::vector<Tensor> gpu_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = Tensor::from_vector(values[i], c.inputs[i].shape)
                   .to(Device::cuda)
                   .to(c.inputs[i].cuda_dtype);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    gpu_in.push_back(t);
  }
  Tensor gpu_out = c.fn(gpu_in);
  REQUIRE(gpu_out.device() == Device::cuda);
  INFO(c.name << ": GPU output " << gpu_out.str());
  CHECK(gpu_out.dtype() == c.out_dtype);
  // The upstream gradient, in the output's dtype on the GPU (so rounded to bf16 there).
  std::vector<float> upstream = random_floats(rng, size_t(gpu_out.numel()));
  if (gpu_out.dtype() == DType::bf16)
    for (float& x : upstream) x = round_bf16(x);
  const bool any_grad = gpu_out.requires_grad();
  if (any_grad)
    gpu_out.backward(Tensor::from_vector(upstream, gpu_out.shape()).to(Device::cuda).to(gpu_out.dtype()));
  cu::synchronize();
  cu::set_poison_allocations(false);

  std::vector<Tensor> cpu_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = Tensor::from_vector(to_double(values[i]), c.inputs[i].shape);
    if (c.inputs[i].grad) t.set_requires_grad(true);
    cpu_in.push_back(t);
  }
  Tensor cpu_out = c.fn(cpu_in);
  if (any_grad) cpu_out.backward(Tensor::from_vector(to_double(upstream), cpu_out.shape()));

  expect_tensor_close(c, "output", gpu_out, cpu_out);
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.inputs[i].grad)
      expect_tensor_close(c, "gradient of input " + std::to_string(i), gpu_in[i].grad(),
                          cpu_in[i].grad());
}

}  // namespace dino::test
