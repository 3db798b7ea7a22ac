// The table's registry (testing/op_cases.h): the families' cases in one list, names checked
// unique, and the look-ups the tests, `dino check` and the benchmarks use.
#include "testing/op_cases.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "testing/bf16_oracle.h"

namespace dino::testing {

OpCase op_case(const std::string& op, std::vector<OpInput> inputs, OpFn fn, DType out_dtype,
               const std::string& detail) {
  OpCase c;
  c.op = op;
  c.name = op;
  for (size_t i = 0; i < inputs.size(); ++i)
    c.name += str_cat(i ? ", " : " ", shape_str(inputs[i].shape), " ", dtype_name(inputs[i].dtype),
                      inputs[i].grad ? "" : " (no grad)");
  if (!detail.empty()) c.name += " " + detail;
  c.inputs = std::move(inputs);
  c.fn = std::move(fn);
  c.out_dtype = out_dtype;
  return c;
}

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> table = [] {
    std::vector<OpCase> c;
    add_elementwise_cases(c);
    add_shape_cases(c);
    add_linear_cases(c);
    add_nn_cases(c);
    std::set<std::string> names;
    for (const OpCase& k : c)
      DINO_CHECK(names.insert(k.name).second, "[op table] two cases are named '", k.name, "'");
    return c;
  }();
  return table;
}

std::vector<std::string> op_names() {
  std::vector<std::string> ops;
  for (const OpCase& c : op_cases())
    if (std::find(ops.begin(), ops.end(), c.op) == ops.end()) ops.push_back(c.op);
  return ops;
}

std::vector<const OpCase*> cases_of(const std::string& op, bool with_bench) {
  std::vector<const OpCase*> out;
  for (const OpCase& c : op_cases())
    if ((op.empty() || c.op == op) && (c.check || with_bench)) out.push_back(&c);
  return out;
}

bool OpCase::in_set(const std::string& set) const {
  if (set == "all")
    return std::any_of(bench.begin(), bench.end(),
                       [](const std::string& b) { return b != "smoke" && b != "quick"; });
  return std::find(bench.begin(), bench.end(), set) != bench.end();
}

std::vector<const OpCase*> bench_cases(const std::vector<std::string>& ops,
                                       const std::string& set) {
  std::vector<const OpCase*> out;
  for (const OpCase& c : op_cases())
    if (c.in_set(set) && std::find(ops.begin(), ops.end(), c.op) != ops.end()) out.push_back(&c);
  return out;
}

uint64_t case_seed(const OpCase& c) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const unsigned char ch : c.name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

std::vector<std::vector<float>> case_values(const OpCase& c, Rng& rng) {
  std::vector<std::vector<float>> values;
  for (const OpInput& in : c.inputs) {
    std::vector<float> v(size_t(shape_numel(in.shape)));
    for (float& x : v) x = float(in.shift + in.scale * rng.normal());
    if (in.bf16_operand || in.dtype == DType::bf16)
      for (float& x : v) x = float(bf16(x));
    values.push_back(std::move(v));
  }
  return values;
}

Bound bound_for(const Tolerance& t, DType dtype, const std::vector<double>& ref,
                double composite_err) {
  const Bound rounding{t.bf16_mult * bf16_output_error(ref) + t.bf16_floor,
                       str_cat(t.bf16_mult, "x bf16 rounding + ", t.bf16_floor)};
  if (t.composite) {
    const Bound comp{t.composite_mult * composite_err + t.composite_floor,
                     str_cat(t.composite_mult, "x ", t.composite_name, " + ", t.composite_floor)};
    return comp.tol < rounding.tol ? comp : rounding;
  }
  if (dtype == DType::bf16) return rounding;
  return {t.f32, str_cat("f32 ", t.f32)};
}

}  // namespace dino::testing
