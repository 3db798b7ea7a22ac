// The CIFAR-10 and CIFAR-100 binary readers on the same bytes: each either opens a dataset
// whose records fit the file or throws a dino::Error.
#include "core/error.h"
#include "data/datasets.h"
#include "fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = dino::fuzz::scratch() / "cifar";
  dino::fuzz::write_file(dir / "test_batch.bin", data, size);
  dino::fuzz::write_file(dir / "test.bin", data, size);
  for (const int classes : {10, 100}) {
    try {
      const auto ds = dino::data::open_cifar(dir.string(), classes, dino::data::Split::test);
      if (ds->size() > 0) {
        ds->get(ds->size() - 1);
        ds->label(ds->size() - 1);
      }
    } catch (const dino::Error&) {
    }
  }
  return 0;
}
