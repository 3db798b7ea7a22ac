// The elementwise ops and the reductions on CUDA against the float64 CPU reference, forward and
// backward, through tests/cuda/op_check.h: add/sub/mul/div with numpy broadcasting and every
// f32/bf16 operand mix (output f32 when either operand is, else bf16), the unary maps (same
// dtype out), sum/mean (an f32 scalar), the row reductions, and sum_to's three paths (all
// reduced, innermost dims reduced, anything else) reached through the broadcast gradients.
// Odd sizes (1, 33, 37, 197) next to training sizes; a determinism check for the sums.
#include <cstring>

#include "core/ops_util.h"  // detail::sum_to
#include "tests/cuda/op_check.h"

using namespace dino;
using namespace dino::test;

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

OpInput input(Shape s, DType dt, bool grad = true, double scale = 1.0, double shift = 0.0) {
  OpInput in;
  in.shape = std::move(s);
  in.cuda_dtype = dt;
  in.grad = grad;
  in.scale = scale;
  in.shift = shift;
  return in;
}

std::string shape_dtype(const Shape& s, DType dt) { return shape_str(s) + " " + dtype_name(dt); }

struct ShapePair {
  Shape a, b;
};

// Same shapes; the position embedding (1, N, D) under (B, N, D); a scalar-shaped (1); a
// per-row (R, 1); a broadcast middle dim; an outer product; 5 dims both ways.
const ShapePair kPairs[] = {
    {{2, 197, 33}, {2, 197, 33}},   {{4, 37, 65}, {1, 37, 65}},  {{37, 33}, {1}},
    {{37, 33}, {37, 1}},            {{3, 1, 33}, {3, 37, 33}},   {{300, 1}, {1, 384}},
    {{2, 3, 1, 5, 7}, {3, 4, 1, 7}}, {{1}, {1}},                  {{8, 197, 384}, {1, 197, 384}},
};

const std::pair<DType, DType> kMixes[] = {{F, F}, {F, H}, {H, F}, {H, H}};

DType promoted(DType a, DType b) { return a == F || b == F ? F : H; }

}  // namespace

TEST_CASE("add, sub, mul, div on CUDA: broadcasting, mixed dtypes, gradients",
          "[ops][elementwise]") {
  struct Op {
    const char* name;
    Tensor (*fn)(const Tensor&, const Tensor&);
  };
  const Op ops[] = {{"add", &add}, {"sub", &sub}, {"mul", &mul}, {"div", &div}};
  uint64_t seed = 100;
  for (const Op& op : ops) {
    for (const ShapePair& p : kPairs) {
      for (const auto& [da, db] : kMixes) {
        const bool is_div = std::string(op.name) == "div";
        OpCase c;
        c.name = std::string(op.name) + " " + shape_dtype(p.a, da) + " with " + shape_dtype(p.b, db);
        // div: the divisor kept away from zero (3 +- 0.5 * N(0, 1)).
        c.inputs = {input(p.a, da), input(p.b, db, true, is_div ? 0.5 : 1.0, is_div ? 3.0 : 0.0)};
        auto fn = op.fn;
        c.fn = [fn](const std::vector<Tensor>& in) { return fn(in[0], in[1]); };
        c.out_dtype = promoted(da, db);
        check_op(c, seed++);
      }
    }
  }
}

TEST_CASE("binary ops on CUDA with only one operand requiring grad", "[ops][elementwise]") {
  uint64_t seed = 300;
  for (const auto& [da, db] : kMixes) {
    OpCase c;
    c.name = "mul, grad on a only, " + shape_dtype({37, 33}, da) + " * " + shape_dtype({1, 33}, db);
    c.inputs = {input({37, 33}, da), input({1, 33}, db, false)};
    c.fn = [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); };
    c.out_dtype = promoted(da, db);
    check_op(c, seed++);
    c.name = "div, grad on b only, " + shape_dtype({37, 33}, da) + " / " + shape_dtype({1, 33}, db);
    c.inputs = {input({37, 33}, da, false), input({1, 33}, db, true, 0.5, 3.0)};
    c.fn = [](const std::vector<Tensor>& in) { return div(in[0], in[1]); };
    check_op(c, seed++);
  }
}

TEST_CASE("gradient accumulation on CUDA: a tensor used twice", "[ops][elementwise]") {
  uint64_t seed = 400;
  for (const auto& [da, db] : kMixes) {
    OpCase c;
    c.name = "x * b + x, then exp(y) * exp(y): " + shape_dtype({37, 33}, da) + ", " +
             shape_dtype({37, 33}, db);
    c.inputs = {input({37, 33}, da, true, 0.5), input({37, 33}, db, true, 0.5)};
    c.fn = [](const std::vector<Tensor>& in) {
      Tensor y = add(mul(in[0], in[1]), in[0]);  // the leaf in[0] gets two gradients
      Tensor e = exp(y);
      return mul(e, e);  // the intermediate e gets two gradients
    };
    c.out_dtype = promoted(da, db);
    // y is stored in bf16 before exp, so e = exp(y) carries y's absolute rounding error
    // (up to 2^-9 |y|) as a relative one, and e * e doubles it: about 1.6% at |y| = 3, 15x
    // the rounding of the result itself (measured 12.7x under the emulator, tests/simt). A
    // missed or doubled accumulation is an error of 50% or more.
    c.bf16_mult = 30.0;
    check_op(c, seed++);
  }
}

TEST_CASE("scale, add_scalar, exp, log, sqrt, gelu on CUDA", "[ops][elementwise]") {
  struct Un {
    const char* name;
    std::function<Tensor(const Tensor&)> fn;
    double scale, shift;  // input values: shift + scale * N(0, 1)
  };
  const Un ops[] = {
      {"scale 0.37", [](const Tensor& x) { return scale(x, 0.37); }, 1.0, 0.0},
      {"scale -2", [](const Tensor& x) { return scale(x, -2.0); }, 1.0, 0.0},
      {"add_scalar 1.5", [](const Tensor& x) { return add_scalar(x, 1.5); }, 1.0, 0.0},
      {"exp", [](const Tensor& x) { return exp(x); }, 1.0, 0.0},
      {"log", [](const Tensor& x) { return log(x); }, 0.5, 3.0},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.5, 3.0},
      {"gelu", [](const Tensor& x) { return gelu(x); }, 2.0, 0.0},
  };
  const Shape shapes[] = {{1}, {37}, {197, 33}, {2, 197, 384}};
  uint64_t seed = 500;
  for (const Un& op : ops) {
    for (const Shape& s : shapes) {
      for (DType dt : {F, H}) {
        OpCase c;
        c.name = std::string(op.name) + " " + shape_dtype(s, dt);
        c.inputs = {input(s, dt, true, op.scale, op.shift)};
        c.fn = [fn = op.fn](const std::vector<Tensor>& in) { return fn(in[0]); };
        c.out_dtype = dt;
        check_op(c, seed++);
      }
    }
  }
}

TEST_CASE("sum and mean on CUDA: an f32 scalar from f32 or bf16", "[ops][elementwise][reduce]") {
  // (1 << 20) + 37 elements: many blocks' partials.
  const Shape shapes[] = {{1}, {37, 33}, {4, 197, 384}, {(1 << 20) + 37}};
  uint64_t seed = 600;
  for (const Shape& s : shapes) {
    for (DType dt : {F, H}) {
      for (bool average : {false, true}) {
        OpCase c;
        c.name = std::string(average ? "mean " : "sum ") + shape_dtype(s, dt);
        c.inputs = {input(s, dt, true, 1.0, 1.0)};  // shifted: no cancellation in the sum
        c.fn = [average](const std::vector<Tensor>& in) {
          return average ? mean(in[0]) : sum(in[0]);
        };
        c.out_dtype = F;
        check_op(c, seed++);
      }
    }
  }
}

TEST_CASE("sum_last, mean_last, max_last on CUDA", "[ops][elementwise][reduce]") {
  // C = 5000: the block-per-row path (C >= 1024); the rest one warp per row.
  const Shape shapes[] = {{1, 33}, {37, 33}, {197, 384}, {3, 5000}, {2, 3, 65}, {7}};
  uint64_t seed = 700;
  for (const Shape& s : shapes) {
    for (DType dt : {F, H}) {
      for (bool keepdim : {true, false}) {
        const std::string tail = " " + shape_dtype(s, dt) + (keepdim ? " keepdim" : "");
        OpCase c;
        c.out_dtype = dt;
        c.name = "sum_last" + tail;
        c.inputs = {input(s, dt)};
        c.fn = [keepdim](const std::vector<Tensor>& in) { return sum_last(in[0], keepdim); };
        check_op(c, seed++);
        c.name = "mean_last" + tail;
        c.fn = [keepdim](const std::vector<Tensor>& in) { return mean_last(in[0], keepdim); };
        check_op(c, seed++);
        c.name = "max_last" + tail;
        c.inputs = {input(s, dt, false)};  // values only: no gradient
        c.fn = [keepdim](const std::vector<Tensor>& in) { return max_last(in[0], keepdim); };
        check_op(c, seed++);
      }
    }
  }
}

TEST_CASE("sum, mean, sum_last and sum_to on CUDA are bit-identical across runs",
          "[ops][elementwise][reduce]") {
  Rng rng(800);
  for (DType dt : {F, H}) {
    INFO(dtype_name(dt));
    const int64_t n = 3 * (1 << 20) + 123;
    Tensor x = Tensor::from_vector(random_floats(rng, size_t(n)), {n}).to(Device::cuda).to(dt);
    Tensor rows = x.narrow(0, 3000 * 1000).reshape({3000, 1000});
    auto bits = [](const Tensor& t) {
      const std::vector<float> v = t.to_vector();
      std::vector<uint32_t> b(v.size());
      std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
      return b;
    };
    CHECK(bits(sum(x)) == bits(sum(x)));
    CHECK(bits(mean(x)) == bits(mean(x)));
    CHECK(bits(sum_last(rows)) == bits(sum_last(rows)));
    CHECK(bits(detail::sum_to(rows, {1, 1000})) == bits(detail::sum_to(rows, {1, 1000})));
    CHECK(bits(detail::sum_to(rows, {1})) == bits(detail::sum_to(rows, {1})));
    // And the value is the sum (f32 accumulation against the double reference).
    const std::vector<float> h = x.to_vector();
    double ref = 0;
    for (float v : h) ref += double(v);
    CHECK(std::fabs(sum(x).item() - ref) <= 1e-4 * std::sqrt(double(n)));
  }
}

TEST_CASE("bf16 zeros and full on CUDA", "[ops][elementwise]") {
  cu::set_poison_allocations(true);
  Tensor z = Tensor::zeros({37, 33}, H, Device::cuda);
  Tensor f = Tensor::full({197}, -1.5, H, Device::cuda);
  cu::set_poison_allocations(false);
  for (float v : z.to_vector()) REQUIRE(v == 0.f);
  for (float v : f.to_vector()) REQUIRE(v == -1.5f);
}

TEST_CASE("elementwise ops on CUDA reject what they cannot take", "[ops][elementwise]") {
  Tensor a = Tensor::full({3}, 1.0, F, Device::cuda);
  Tensor host = Tensor::full({3}, 1.0, F, Device::cpu);
  Tensor ints = Tensor::empty({3}, DType::i32, Device::cuda);
  CHECK_THROWS_WITH(add(a, host), Catch::Contains("[add]"));
  CHECK_THROWS_WITH(mul(a, ints), Catch::Contains("[mul] b must be f32 or bf16"));
  CHECK_THROWS_WITH(add(a, Tensor::full({4}, 1.0, F, Device::cuda)),
                    Catch::Contains("do not broadcast"));
  CHECK_THROWS_WITH(exp(ints), Catch::Contains("[exp]"));
  CHECK_THROWS_WITH(sum(ints), Catch::Contains("[sum]"));
}
