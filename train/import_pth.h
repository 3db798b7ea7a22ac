#pragma once
// PyTorch's torch.save files (.pth, .pt) read without PyTorch, for `dino import`.
//
// Since PyTorch 1.6 such a file is an uncompressed zip archive: NAME/data.pkl is a pickle of
// the saved object, NAME/data/KEY holds each tensor storage's raw little-endian bytes. This
// reader understands only what tensor state dicts and DINO's training checkpoints pickle:
// dicts (OrderedDict included), lists, tuples, strings, numbers, booleans, None, tensors
// (torch._utils._rebuild_tensor_v2 and _rebuild_parameter over typed storages) and
// argparse.Namespace (DINO keeps its command line in `args`), kept as its attribute dict. A
// pickle that names any other class or function is refused with that name: nothing in the
// file is executed, and nothing unknown is guessed at.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dino::pth {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// A tensor as the pickle describes it; its data stays in the archive until asked for.
struct TensorRef {
  std::string storage_key;   // NAME/data/<storage_key>
  std::string storage_type;  // "FloatStorage", "HalfStorage", ...
  int64_t storage_numel = 0;
  int64_t offset = 0;   // elements into the storage
  Shape shape, stride;  // stride in elements
};

struct Value {
  // global, storage and mark exist only while the pickle is read.
  enum class Kind {
    none,
    boolean,
    integer,
    real,
    string,
    tuple,
    list,
    dict,
    tensor,
    object,
    global,
    storage
  };
  Kind kind = Kind::none;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                                    // string; module.name of an object or global
  std::vector<ValuePtr> items;                         // tuple, list
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // dict in insertion order; object attributes
  TensorRef tensor;                                    // tensor; storage (key, type, numel)

  // The entry of a dict or object under a string key, nullptr when there is none.
  const Value* get(const std::string& key) const;
  // "a dict of 152 entries", "a tensor (384)", "the string 'vit_small'".
  std::string describe() const;
};

// Text from a file as it may appear in a message: bytes outside printable ASCII as \xNN.
std::string printable(const std::string& s);

class File {
 public:
  // Reads the archive's directory and unpickles data.pkl; throws naming the file and what is
  // wrong (not a zip, the pre-1.6 format, a TorchScript archive, a class it will not load).
  explicit File(const std::string& path);
  const std::string& path() const { return path_; }
  const Value& root() const { return *root_; }
  // The tensor's elements as a contiguous f32 CPU tensor (from f32, f64, f16 or bf16 storages);
  // `name` is only for messages.
  Tensor tensor(const TensorRef& t, const std::string& name) const;

 private:
  struct Record {
    uint64_t offset = 0, size = 0;  // of the data in the file
  };
  std::string read_record(const std::string& name) const;
  std::string path_, prefix_;  // prefix_: "NAME/"
  std::map<std::string, Record> records_;
  ValuePtr root_;
};

}  // namespace dino::pth
