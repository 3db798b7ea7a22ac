#pragma once
// The op table's gradient check on the CPU (after ggml's test-backend-ops grad mode): a case
// runs in float64, its output is reduced with fixed random weights (L = sum(out * W)), and for
// every input that takes a gradient the backward's directional derivative <grad, v> is held to
// the central difference (L(x + h v) - L(x - h v)) / 2h along random directions v. Two
// forwards per direction, whatever the input's size, so every case of the table is checked;
// a wrong gradient in a single element still shows, as its share of <grad, v> is ~1/n of
// |grad| |v| and the float64 check resolves ~1e-9 of that.
#include <cstdint>
#include <string>
#include <vector>

#include "testing/op_cases.h"

namespace dino::testing {

struct GradCheck {
  struct Direction {
    size_t input = 0;
    double analytic = 0, numeric = 0;
    double error = 0;  // |analytic - numeric| / (|grad| |v|)
  };
  std::vector<Direction> directions;
  double tolerance = 0;
  std::string error;  // an exception the case threw, or what is missing
  bool pass() const;
  std::string describe() const;
};

// Whether any input of `c` takes a gradient.
bool takes_gradient(const OpCase& c);

// Checks `c` with `directions` random directions per input (seeded by the case's name).
GradCheck check_case_gradients(const OpCase& c, int directions = 2, double tolerance = 1e-7);

}  // namespace dino::testing
