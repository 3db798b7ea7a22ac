// See augment_cases.h.
#include "testing/augment_cases.h"

#include <algorithm>

namespace dino::testing {

namespace {

std::vector<std::pair<int, int>> same(int batch, int height, int width) {
  return std::vector<std::pair<int, int>>(size_t(batch), {height, width});
}

}  // namespace

bool AugmentCase::uniform() const {
  return std::all_of(sources.begin(), sources.end(),
                     [this](const std::pair<int, int>& s) { return s == sources[0]; });
}

const std::vector<AugmentCase>& augment_cases() {
  static const std::vector<AugmentCase> cases = [] {
    std::vector<AugmentCase> c;
    // Odd sizes; 60x13 makes 21-pixel views from 13-pixel columns (enlarging), 97x83 from
    // boxes up to 4.6x their output (the widest taps); 3 channels and 1.
    for (const int C : {3, 1})
      c.push_back(
          {"odd sources, mixed sizes", C, {{37, 29}, {60, 13}, {97, 83}}, 21, 3, 9, true, {}});
    // The emulated benchmark run's small batch (set "smoke"), checked like any case.
    c.push_back({"smoke", 3, same(2, 23, 31), 13, 2, 7, true, {"smoke"}});
    c.push_back({"vit-s/16 crops of 500x375 images, batch 64",
                 3,
                 same(64, 375, 500),
                 224,
                 10,
                 96,
                 false,
                 {"vit"}});
    c.push_back({"fashion-mnist recipe, batch 64", 1, same(64, 28, 28), 28, 6, 12, false, {"vit"}});
    return c;
  }();
  return cases;
}

std::vector<const AugmentCase*> checked_augment_cases() {
  std::vector<const AugmentCase*> out;
  for (const AugmentCase& c : augment_cases())
    if (c.check) out.push_back(&c);
  return out;
}

std::vector<const AugmentCase*> augment_bench_cases(const std::string& set) {
  std::vector<const AugmentCase*> out;
  for (const AugmentCase& c : augment_cases())
    for (const std::string& b : c.bench)
      if (set == "all" ? b != "smoke" : b == set) {
        out.push_back(&c);
        break;
      }
  return out;
}

}  // namespace dino::testing
