// `dino check`'s table (testing/cuda/selfcheck.h): every row passes. Its comparisons use the
// same references and tolerances as the per-kernel tests here; this keeps the command's
// verdict and the tests' in step.
#include "tests/cuda/test_util.h"

TEST_CASE("dino check: every kernel comparison passes", "[selfcheck]") {
  const auto rows = dino::kernels::cuda::selfcheck::run_all();
  CHECK(rows.size() >= 40);
  for (const auto& r : rows) {
    INFO(r.kernel << " " << r.shape << " " << r.output << ": rel error " << r.rel_err
                  << " (tolerance " << r.tol << "), " << r.non_finite << " non-finite; "
                  << r.worst);
    CHECK(r.pass);
  }
}
