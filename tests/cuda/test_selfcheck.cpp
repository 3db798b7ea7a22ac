// `dino check`'s optimizer rows (testing/cuda/selfcheck.h): every row passes, so the command's
// verdict and the tests' agree (the op table's cases are tests/cuda/test_op_table.cpp).
#include "tests/cuda/test_util.h"

TEST_CASE("dino check: every optimizer comparison passes", "[selfcheck]") {
  const auto rows = dino::kernels::cuda::selfcheck::run_optimizer_checks();
  CHECK(rows.size() >= 9);
  for (const auto& r : rows) {
    INFO(r.kernel << " " << r.shape << " " << r.output << ": rel error " << r.rel_err
                  << " (tolerance " << r.tol << "), " << r.non_finite << " non-finite; "
                  << r.worst);
    CHECK(r.pass);
  }
}
