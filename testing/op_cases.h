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
#include "core/rng.h"
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

// A composite reference: the op computed in float64 with the roundings a plain bf16
// implementation makes (cuBLAS GEMMs and unfused kernels, every product stored in bf16), from
// the inputs' values as the device sees them (in the case's order) and the upstream gradient.
// Its error against the exact result is what the straightforward GPU implementation loses.
struct CompositeResult {
  std::vector<double> out;
  std::vector<std::vector<double>> grads;  // one per input (empty: none)
};
using CompositeFn = std::function<CompositeResult(const std::vector<std::vector<double>>& inputs,
                                                  const std::vector<double>& upstream)>;

// The bound on the relative L2 error ||got - ref|| / ||ref|| of one result (the output or an
// input's gradient): an f32 result f32; a bf16 result bf16_mult x the error of merely rounding
// the exact result to bf16, plus bf16_floor. With a composite, every result, whatever its
// dtype, gets the smaller of that bf16 bound and composite_mult x the composite's error on that
// result plus composite_floor: the rule for a fused kernel that rounds inside as FlashAttention
// does (P and dS in bf16), no worse than the plain implementation's error allows and never
// looser than the rounding bound (the composite's own error can reach 0.8%, which alone would
// let a 1% error through).
struct Tolerance {
  double f32 = 1e-5;
  double bf16_mult = 2.0, bf16_floor = 1e-3;
  CompositeFn composite;
  std::string composite_name;  // what the composite is, for the check's rows
  double composite_mult = 2.0, composite_floor = 1e-3;
};

// The bound on one result of dtype `dtype` whose exact value is ref; composite_err is the
// composite's error on that result (used only when the tolerance has a composite). Also says
// which rule it applied ("2x bf16 rounding + 0.001").
struct Bound {
  double tol = 0;
  std::string rule;
};
Bound bound_for(const Tolerance& t, DType dtype, const std::vector<double>& ref,
                double composite_err = 0);

using Inputs = std::vector<Tensor>;
using OpFn = std::function<Tensor(const Inputs&)>;

struct OpCase {
  std::string op;    // the op front end (core/ops.h), e.g. "layer_norm"; a composition's name
  std::string name;  // the op with its shapes and dtypes, unique in the table
  std::vector<OpInput> inputs;
  OpFn fn;                       // the same code on both devices
  DType out_dtype = DType::f32;  // the dtype the GPU output must have (ARCHITECTURE §3)
  Tolerance tol;
  // The GPU run repeated on the same inputs gives the same bits, output and gradients: the
  // kernels reduce in a fixed order (no atomics), which resuming a run bit for bit relies on.
  bool deterministic = false;
  // Run by the CUDA tests and `dino check`. Off for a benchmark-only shape (too large to
  // compare in float64 on every test run); `dino check --bench SET` still compares those.
  bool check = true;
  // The kernel benchmark shape sets the case belongs to ("smoke", "vit", "long", "quick"; none:
  // not a benchmark shape), its sizes in that op's order (attention B, N, H, Dh; layer_norm
  // rows, C; linear rows, in, out; linear_drop_path B, rows per sample, in, out, p in percent;
  // dino_loss G, V, B, K), which the kernel tests read too, and what they stand for.
  std::vector<std::string> bench;
  std::vector<int64_t> dims;
  std::string label;
  bool in_set(const std::string& set) const;
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
// The benchmark shapes of the given ops in shape set `set` ("smoke", "vit", "long", "quick": the
// shapes tools/gpu-check.sh times, or "all": every set but "smoke" and "quick").
std::vector<const OpCase*> bench_cases(const std::vector<std::string>& ops, const std::string& set);
// A stable seed for the case's random inputs (a hash of its name).
uint64_t case_seed(const OpCase& c);
// The case's input values, fresh from rng (shift + scale * N(0, 1)), rounded to bf16 where the
// device reads them as bf16: what the op check and the kernel tests feed both sides.
std::vector<std::vector<float>> case_values(const OpCase& c, Rng& rng);

// The families, one file each (testing/op_cases_<family>.cpp).
void add_elementwise_cases(std::vector<OpCase>& c);
void add_linear_cases(std::vector<OpCase>& c);
void add_nn_cases(std::vector<OpCase>& c);
void add_shape_cases(std::vector<OpCase>& c);

}  // namespace dino::testing
