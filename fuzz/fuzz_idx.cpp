// The Fashion-MNIST IDX reader: the input is split into an images file and a labels file (its
// first two bytes, little-endian, give the labels file's length), each gzip or plain, as the
// dataset folder would hold them. Opening either succeeds with images that fit the files or
// throws a dino::Error.
#include "core/error.h"
#include "data/datasets.h"
#include "fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t labels = std::min<size_t>(size - 2, size_t(data[0]) | size_t(data[1]) << 8);
  const auto dir = dino::fuzz::scratch() / "idx";
  dino::fuzz::write_file(dir / "t10k-labels-idx1-ubyte", data + 2, labels);
  dino::fuzz::write_file(dir / "t10k-images-idx3-ubyte", data + 2 + labels, size - 2 - labels);
  try {
    const auto ds = dino::data::open_fashion_mnist(dir.string(), dino::data::Split::test);
    if (ds->size() > 0) {
      ds->get(ds->size() - 1);
      ds->label(ds->size() - 1);
    }
  } catch (const dino::Error&) {
  }
  return 0;
}
