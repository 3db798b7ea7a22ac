// The op table (testing/op_cases.h) on the CUDA backend: one test per op, named
// "op table: <op>", requiring every checked case of that op to match the CPU's float64
// reference, output and gradients, within the case's tolerance (testing/cuda/op_check.h). The tests
// are registered from the table at start-up, so a case added there is tested here.
#include <catch2/catch.hpp>
#include <deque>
#include <string>

#include "testing/cuda/op_check.h"
#include "testing/op_cases.h"

namespace {

struct OpTableTest : Catch::ITestInvoker {
  explicit OpTableTest(std::string op) : op(std::move(op)) {}
  void invoke() const override {
    const auto cases = dino::testing::cases_of(op);
    REQUIRE(!cases.empty());
    for (const dino::testing::OpCase* c : cases) {
      const dino::testing::CaseCheck r = dino::testing::check_case(*c);
      INFO(r.describe_failures());
      CHECK(r.pass());
    }
  }
  std::string op;
};

// Catch keeps the name it is given by reference until it has copied it: the names live here.
const bool registered = [] {
  static std::deque<std::string> names;
  for (const std::string& op : dino::testing::op_names()) {
    if (dino::testing::cases_of(op).empty()) continue;  // benchmark shapes only
    names.push_back("op table: " + op);
    Catch::AutoReg(new OpTableTest(op), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{Catch::StringRef(names.back()), "[ops][op_table]"});
  }
  return true;
}();

}  // namespace
