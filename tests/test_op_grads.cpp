// The op table (testing/op_cases.h) on the CPU: one test per op, "grad: <op> (table)", holding
// the backward of every case of that op to central differences in float64
// (testing/grad_check.h). Registered from the table at start-up, so a case added there is
// checked here as well as on CUDA (tests/cuda/test_op_table.cpp).
#include <catch2/catch.hpp>
#include <deque>
#include <string>

#include "testing/grad_check.h"
#include "testing/op_cases.h"

namespace {

struct OpGradTest : Catch::ITestInvoker {
  explicit OpGradTest(std::string op) : op(std::move(op)) {}
  void invoke() const override {
    const auto cases = dino::testing::cases_of(op);
    REQUIRE(!cases.empty());
    for (const dino::testing::OpCase* c : cases) {
      if (!dino::testing::takes_gradient(*c)) continue;  // a forward-only case
      const dino::testing::GradCheck r = dino::testing::check_case_gradients(*c);
      INFO(c->name << ": " << r.describe());
      CHECK(r.pass());
    }
  }
  std::string op;
};

// Catch keeps the name it is given by reference until it has copied it: the names live here.
const bool registered = [] {
  static std::deque<std::string> names;
  for (const std::string& op : dino::testing::op_names()) {
    bool any_gradient = false;
    for (const dino::testing::OpCase* c : dino::testing::cases_of(op))
      any_gradient |= dino::testing::takes_gradient(*c);
    if (!any_gradient) continue;
    names.push_back("grad: " + op + " (table)");
    Catch::AutoReg(new OpGradTest(op), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{Catch::StringRef(names.back()), "[grad][op_table]"});
  }
  return true;
}();

}  // namespace
