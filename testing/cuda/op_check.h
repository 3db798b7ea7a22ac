#pragma once
// Runs one case of the op table (testing/op_cases.h) on the CUDA backend and on the CPU in
// float64, forward and backward, on fresh random inputs, with every fresh CUDA allocation
// poisoned with NaN (an element an op forgets to write shows). The output and every input
// gradient are compared with ||got - ref|| / ||ref|| (testing/bf16_oracle.h) against the
// case's tolerance rule (Tolerance: bf16 rounding of the exact result, or a composite reference
// such as attention's plain bf16 one, computed here from the same inputs); the GPU output's
// dtype against the case's; a deterministic case's GPU run is repeated and must give the same
// bits. No test framework: the CUDA tests (tests/cuda/test_op_table.cpp) require every result
// to pass, `dino check` prints them as a table.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "testing/op_cases.h"

namespace dino::testing {

struct Result {
  std::string what;  // "output bf16", "grad 0 f32", "rerun (bits)"
  double rel_err = 0, tol = 0;
  size_t non_finite = 0;
  bool pass = false;
  std::string worst;  // the worst element, for a failing result
  std::string rule;   // how tol was set, e.g. "2x bf16 rounding + 0.001"
};

struct CaseCheck {
  const OpCase* c = nullptr;
  std::vector<Result> results;
  // Set when the case could not be compared: a thrown error (a failed CUDA call, a refused
  // input), a wrong output dtype, a gradient present on one device only.
  std::string error;
  bool pass() const;
  // One line per failing result (or the error), for a test's message.
  std::string describe_failures() const;
};

// Needs a usable CUDA device (the emulator counts). seed 0: the case's own (case_seed).
CaseCheck check_case(const OpCase& c, uint64_t seed = 0);

}  // namespace dino::testing
