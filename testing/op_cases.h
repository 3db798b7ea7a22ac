#pragma once
// The table of op cases (after ggml's test-backend-ops): every case names its op, its input
// shapes and dtypes, its tolerance rule and the code that runs it, once. The same case runs on
// the CPU in float64 (the reference) and on the CUDA backend under the device's precision
// policy (ARCHITECTURE §3), forward and backward (testing/cuda/op_check.h); the CUDA tests
// (tests/cuda/test_op_table.cpp), `dino check` and the kernel benchmarks' shape sets all read
// this table and keep no list of their own.
//
// Adding a case: append it in the op family's file (testing/op_cases_<family>.cpp), e.g.
//   c.push_back(op_case("layer_norm", {{{197, 384}, DType::f32, true, 1.0, 3.0},  // x
//                                      {{384}}, {{384}}},                          // w, b
//                       [](const Inputs& in) { return layer_norm(in[0], in[1], in[2], 1e-6); },
//                       DType::bf16));                                // the GPU writes bf16
// Its name (op, shapes, dtypes) is made from the inputs unless given; its seed is a hash of the
// name, so a case's inputs do not depend on where it sits in the table.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace dino::testing {

struct OpInput {
  Shape shape;
  DType dtype = DType::f32;         // what the op gets on the GPU: bf16 activations, f32 params
  bool grad = true;                 // requires_grad on both sides
  double scale = 1.0, shift = 0.0;  // values: shift + scale * N(0, 1), fresh per case
  // The GPU reads this f32 input as bf16 (a GEMM operand such as a Linear weight or the
  // images under patchify): its values are rounded to bf16 for both sides, so the reference
  // sees what the device multiplies. bf16 inputs are always rounded.
  bool bf16_operand = false;
};

// The bound on the relative L2 error ||got - ref|| / ||ref|| of one result (the output or an
// input's gradient): an f32 result f32; a bf16 result bf16_mult x the error of merely rounding
// the exact result to bf16, plus bf16_floor.
struct Tolerance {
  double f32 = 1e-5;
  double bf16_mult = 2.0, bf16_floor = 1e-3;
};

using Inputs = std::vector<Tensor>;
using OpFn = std::function<Tensor(const Inputs&)>;

struct OpCase {
  std::string op;    // the op front end (core/ops.h), e.g. "layer_norm"; a composition's name
  std::string name;  // the op with its shapes and dtypes, unique in the table
  std::vector<OpInput> inputs;
  OpFn fn;                       // the same code on both devices
  DType out_dtype = DType::f32;  // the dtype the GPU output must have (ARCHITECTURE §3)
  Tolerance tol;
  // Run by the CUDA tests and `dino check`. Off for a benchmark-only shape (too large to
  // compare in float64 on every test run); `dino check --bench SET` still compares those.
  bool check = true;
  // The kernel benchmark shape set the case belongs to ("smoke", "vit", "long"; empty: none), its
  // sizes in that benchmark's order (attention B, N, H, Dh) and what they stand for.
  std::string bench;
  std::vector<int64_t> dims;
  std::string label;
};

// A case with its name made from the op, the inputs' shapes and dtypes and `detail`.
OpCase op_case(const std::string& op, std::vector<OpInput> inputs, OpFn fn, DType out_dtype,
               const std::string& detail = "");

// The whole table, in family order; built once.
const std::vector<OpCase>& op_cases();
// The ops that have cases, in table order, each once.
std::vector<std::string> op_names();
// The cases of one op (all of them when op is empty), checked ones only unless with_bench.
std::vector<const OpCase*> cases_of(const std::string& op, bool with_bench = false);
// The benchmark shapes of the given ops in shape set `set` ("smoke", "vit", "long", or "all":
// every set but "smoke").
std::vector<const OpCase*> bench_cases(const std::vector<std::string>& ops, const std::string& set);
// A stable seed for the case's random inputs (a hash of its name).
uint64_t case_seed(const OpCase& c);

// The families, one file each (testing/op_cases_<family>.cpp).
void add_elementwise_cases(std::vector<OpCase>& c);
void add_linear_cases(std::vector<OpCase>& c);
void add_nn_cases(std::vector<OpCase>& c);
void add_shape_cases(std::vector<OpCase>& c);

}  // namespace dino::testing
