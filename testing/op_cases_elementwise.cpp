// The elementwise ops and the reductions: add/sub/mul/div with numpy broadcasting and every
// f32/bf16 operand mix (output f32 when either operand is, else bf16), the unary maps (same
// dtype out), sum/mean (an f32 scalar), the row reductions, and sum_to's three paths (all
// reduced, innermost dims reduced, anything else) reached through the broadcast gradients.
// Odd sizes (1, 33, 37, 197) next to training sizes.
#include "core/error.h"
#include "core/ops.h"
#include "testing/op_cases.h"

namespace dino::testing {

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

DType promoted(DType a, DType b) { return a == F || b == F ? F : H; }

void add_binary(std::vector<OpCase>& c) {
  struct Op {
    const char* name;
    Tensor (*fn)(const Tensor&, const Tensor&);
  };
  const Op ops[] = {{"add", &add}, {"sub", &sub}, {"mul", &mul}, {"div", &div}};
  // Same shapes; the position embedding (1, N, D) under (B, N, D); a scalar-shaped (1); a
  // per-row (R, 1); a broadcast middle dim; an outer product; 5 dims both ways.
  const std::pair<Shape, Shape> pairs[] = {
      {{2, 197, 33}, {2, 197, 33}},
      {{4, 37, 65}, {1, 37, 65}},
      {{37, 33}, {1}},
      {{37, 33}, {37, 1}},
      {{3, 1, 33}, {3, 37, 33}},
      {{300, 1}, {1, 384}},
      {{2, 3, 1, 5, 7}, {3, 4, 1, 7}},
      {{1}, {1}},
      {{8, 197, 384}, {1, 197, 384}},
  };
  const std::pair<DType, DType> mixes[] = {{F, F}, {F, H}, {H, F}, {H, H}};
  for (const Op& op : ops) {
    const bool is_div = std::string(op.name) == "div";
    const auto fn = op.fn;
    for (const auto& [a, b] : pairs)
      for (const auto& [da, db] : mixes)
        // div: the divisor kept away from zero (3 +- 0.5 * N(0, 1)).
        c.push_back(op_case(
            op.name, {{a, da}, {b, db, true, is_div ? 0.5 : 1.0, is_div ? 3.0 : 0.0}},
            [fn](const Inputs& in) { return fn(in[0], in[1]); }, promoted(da, db)));
  }
  // Only one operand requires grad: the other's gradient is never formed.
  for (const auto& [da, db] : mixes) {
    c.push_back(op_case(
        "mul", {{{37, 33}, da}, {{1, 33}, db, false}},
        [](const Inputs& in) { return mul(in[0], in[1]); }, promoted(da, db)));
    c.push_back(op_case(
        "div", {{{37, 33}, da, false}, {{1, 33}, db, true, 0.5, 3.0}},
        [](const Inputs& in) { return div(in[0], in[1]); }, promoted(da, db)));
  }
  // Gradient accumulation: a leaf and an intermediate each used twice.
  for (const auto& [da, db] : mixes) {
    OpCase k = op_case(
        "accumulate", {{{37, 33}, da, true, 0.5}, {{37, 33}, db, true, 0.5}},
        [](const Inputs& in) {
          Tensor y = add(mul(in[0], in[1]), in[0]);  // in[0] gets two gradients
          Tensor e = exp(y);
          return mul(e, e);  // the intermediate e gets two gradients
        },
        promoted(da, db), "(x * b + x, then exp(y) * exp(y))");
    // y is stored in bf16 before exp, so e = exp(y) carries y's absolute rounding error
    // (up to 2^-9 |y|) as a relative one, and e * e doubles it: about 1.6% at |y| = 3, 15x
    // the rounding of the result itself (measured 12.7x under the emulator, tests/simt). A
    // missed or doubled accumulation is an error of 50% or more.
    k.tol.bf16_mult = 30.0;
    c.push_back(std::move(k));
  }
}

void add_unary(std::vector<OpCase>& c) {
  struct Un {
    const char* op;
    const char* detail;
    std::function<Tensor(const Tensor&)> fn;
    double scale, shift;  // input values: shift + scale * N(0, 1)
  };
  const Un ops[] = {
      {"scale", "by 0.37", [](const Tensor& x) { return scale(x, 0.37); }, 1.0, 0.0},
      {"scale", "by -2", [](const Tensor& x) { return scale(x, -2.0); }, 1.0, 0.0},
      {"add_scalar", "1.5", [](const Tensor& x) { return add_scalar(x, 1.5); }, 1.0, 0.0},
      {"exp", "", [](const Tensor& x) { return exp(x); }, 1.0, 0.0},
      {"log", "", [](const Tensor& x) { return log(x); }, 0.5, 3.0},
      {"sqrt", "", [](const Tensor& x) { return sqrt(x); }, 0.5, 3.0},
      // N(0, 1): in f32, 1 + erf(x / sqrt 2) cancels for x < -4 (relative error ~1e-3 at
      // x = -4.25), more than the f32 bound allows a one-element case; x < -4 has probability
      // 3e-5 here.
      {"gelu", "", [](const Tensor& x) { return gelu(x); }, 1.0, 0.0},
  };
  for (const Un& op : ops)
    for (const Shape& s : {Shape{1}, Shape{37}, Shape{197, 33}, Shape{2, 197, 384}})
      for (const DType dt : {F, H})
        c.push_back(op_case(
            op.op, {{s, dt, true, op.scale, op.shift}},
            [fn = op.fn](const Inputs& in) { return fn(in[0]); }, dt, op.detail));
}

void add_reductions(std::vector<OpCase>& c) {
  // (1 << 20) + 37 elements: many blocks' partials. Shifted inputs: no cancellation in the sum.
  for (const Shape& s : {Shape{1}, Shape{37, 33}, Shape{4, 197, 384}, Shape{(1 << 20) + 37}})
    for (const DType dt : {F, H}) {
      c.push_back(op_case(
          "sum", {{s, dt, true, 1.0, 1.0}}, [](const Inputs& in) { return sum(in[0]); }, F));
      c.push_back(op_case(
          "mean", {{s, dt, true, 1.0, 1.0}}, [](const Inputs& in) { return mean(in[0]); }, F));
    }
  // C = 5000: the block-per-row path (C >= 1024); the rest one warp per row.
  for (const Shape& s :
       {Shape{1, 33}, Shape{37, 33}, Shape{197, 384}, Shape{3, 5000}, Shape{2, 3, 65}, Shape{7}})
    for (const DType dt : {F, H})
      for (const bool keep : {true, false}) {
        const std::string detail = keep ? "keepdim" : "";
        c.push_back(op_case(
            "sum_last", {{s, dt}}, [keep](const Inputs& in) { return sum_last(in[0], keep); }, dt,
            detail));
        c.push_back(op_case(
            "mean_last", {{s, dt}}, [keep](const Inputs& in) { return mean_last(in[0], keep); }, dt,
            detail));
        // Values only: max_last has no gradient.
        c.push_back(op_case(
            "max_last", {{s, dt, false}},
            [keep](const Inputs& in) { return max_last(in[0], keep); }, dt, detail));
      }
}

}  // namespace

void add_elementwise_cases(std::vector<OpCase>& c) {
  add_binary(c);
  add_unary(c);
  add_reductions(c);
}

}  // namespace dino::testing
