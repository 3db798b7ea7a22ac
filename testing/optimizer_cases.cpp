// See optimizer_cases.h.
#include "testing/optimizer_cases.h"

namespace dino::testing {

TensorLayout optimizer_layout(Rng& rng, bool aligned) {
  TensorLayout l;
  l.sizes = {1, 3, 33, 37, 197, 1023, 1024, 1025, 4097, 65537, 300001};
  for (int i = 0; i < 1500; ++i) l.sizes.push_back(int64_t(1 + rng.below(9)));
  for (const int64_t n : l.sizes) {
    if (aligned) l.total = (l.total + 3) / 4 * 4;
    l.offsets.push_back(l.total);
    l.total += n;
  }
  return l;
}

}  // namespace dino::testing
