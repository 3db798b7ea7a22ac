#include "train/import_pth.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/dtype.h"

namespace dino::pth {

namespace {

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

// The element size of each storage type torch.save names, 0 for the ones it does not.
size_t storage_element_size(const std::string& type) {
  static const std::map<std::string, size_t> sizes = {
      {"FloatStorage", 4}, {"DoubleStorage", 8}, {"HalfStorage", 2},  {"BFloat16Storage", 2},
      {"LongStorage", 8},  {"IntStorage", 4},    {"ShortStorage", 2}, {"CharStorage", 1},
      {"ByteStorage", 1},  {"BoolStorage", 1}};
  const auto it = sizes.find(type);
  return it == sizes.end() ? 0 : it->second;
}

float half_to_float(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float v;
  if (exponent == 0)
    v = std::ldexp(float(mantissa), -24);  // subnormal or zero
  else if (exponent == 31)
    v = mantissa ? NAN : INFINITY;
  else
    v = std::ldexp(float(mantissa | 0x400), exponent - 25);
  return sign ? -v : v;
}

// The pickle machine, for the opcodes torch.save's protocol 2 (and 3-4) writes.
class Unpickler {
 public:
  Unpickler(const std::string& data, const std::string& path) : data_(data), path_(path) {}

  ValuePtr run() {
    for (;;) {
      const size_t at = pos_;
      const unsigned char op = byte();
      switch (op) {
        case 0x80: byte(); break;    // PROTO
        case 0x95: bytes(8); break;  // FRAME
        case '.': {                  // STOP
          DINO_CHECK(stack_.size() == 1 && marks_.empty(), "[", path_, "] data.pkl ends with ",
                     stack_.size(), " values on the pickle stack (damaged file)");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;                             // MARK
        case '0': pop(); break;                                                       // POP
        case '}': push(make(Value::Kind::dict)); break;                               // EMPTY_DICT
        case ']': push(make(Value::Kind::list)); break;                               // EMPTY_LIST
        case ')': push(make(Value::Kind::tuple)); break;                              // EMPTY_TUPLE
        case 't': push(tuple(pop_to_mark())); break;                                  // TUPLE
        case 0x85: push(tuple(pop_n(1))); break;                                      // TUPLE1
        case 0x86: push(tuple(pop_n(2))); break;                                      // TUPLE2
        case 0x87: push(tuple(pop_n(3))); break;                                      // TUPLE3
        case 'N': push(make(Value::Kind::none)); break;                               // NONE
        case 0x88: push(boolean(true)); break;                                        // NEWTRUE
        case 0x89: push(boolean(false)); break;                                       // NEWFALSE
        case 'K': push(integer(int64_t(le(bytes(1), 1)))); break;                     // BININT1
        case 'M': push(integer(int64_t(le(bytes(2), 2)))); break;                     // BININT2
        case 'J': push(integer(int64_t(int32_t(uint32_t(le(bytes(4), 4)))))); break;  // BININT
        case 0x8a: push(long1()); break;                                              // LONG1
        case 'G': push(binfloat()); break;                                            // BINFLOAT
        case 'X': push(string(le(bytes(4), 4))); break;                               // BINUNICODE
        case 0x8c: push(string(le(bytes(1), 1))); break;  // SHORT_BINUNICODE
        case 0x8d: push(string(le(bytes(8), 8))); break;  // BINUNICODE8
        case 'U': push(string(le(bytes(1), 1))); break;   // SHORT_BINSTRING
        case 'T': push(string(le(bytes(4), 4))); break;   // BINSTRING
        case 'q': memo_[le(bytes(1), 1)] = top(); break;  // BINPUT
        case 'r': memo_[le(bytes(4), 4)] = top(); break;  // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;    // MEMOIZE
        case 'h': push(memo(le(bytes(1), 1))); break;     // BINGET
        case 'j': push(memo(le(bytes(4), 4))); break;     // LONG_BINGET
        case 'c': {                                       // GLOBAL
          const std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const ValuePtr name = pop(), module = pop();
          DINO_CHECK(name->kind == Value::Kind::string && module->kind == Value::Kind::string, "[",
                     path_, "] damaged pickle: STACK_GLOBAL without two strings");
          push(global(module->text, name->text));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID
        case 'R': {                                     // REDUCE
          const ValuePtr args = pop(), callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          const ValuePtr args = pop(), cls = pop();
          push(new_object(cls, args));
          break;
        }
        case 'b': {  // BUILD
          const ValuePtr state = pop();
          build(top(), state);
          break;
        }
        case 's': {  // SETITEM
          const ValuePtr value = pop(), key = pop();
          set_items(top(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          const std::vector<ValuePtr> kv = pop_to_mark();
          set_items(top(), kv);
          break;
        }
        case 'a': {  // APPEND
          const ValuePtr v = pop();
          append(top(), {v});
          break;
        }
        case 'e': {  // APPENDS
          const std::vector<ValuePtr> vs = pop_to_mark();
          append(top(), vs);
          break;
        }
        default:
          throw Error(str_cat("[", path_, "] data.pkl: pickle opcode 0x", hex(op), " at byte ", at,
                              " is not one torch.save writes for a state dict; this reader takes "
                              "tensor state dicts and DINO training checkpoints"));
      }
    }
  }

 private:
  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return {digits[(v >> 4) & 15], digits[v & 15]};
  }
  unsigned char byte() { return *bytes(1); }
  const unsigned char* bytes(size_t n) {
    DINO_CHECK(n <= data_.size() - pos_, "[", path_, "] data.pkl is truncated at byte ", pos_);
    const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
    pos_ += n;
    return p;
  }
  std::string line() {
    const size_t end = data_.find('\n', pos_);
    DINO_CHECK(end != std::string::npos, "[", path_, "] data.pkl is truncated at byte ", pos_);
    std::string s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    DINO_CHECK(stack_.size() > (marks_.empty() ? 0 : marks_.back()), "[", path_,
               "] damaged pickle: pop from an empty stack at byte ", pos_);
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() const {
    DINO_CHECK(!stack_.empty(), "[", path_, "] damaged pickle: empty stack at byte ", pos_);
    return stack_.back();
  }
  std::vector<ValuePtr> pop_n(size_t n) {
    std::vector<ValuePtr> out(n);
    for (size_t i = n; i-- > 0;) out[i] = pop();
    return out;
  }
  std::vector<ValuePtr> pop_to_mark() {
    DINO_CHECK(!marks_.empty(), "[", path_, "] damaged pickle: no MARK at byte ", pos_);
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> out(stack_.begin() + ptrdiff_t(mark), stack_.end());
    stack_.resize(mark);
    return out;
  }
  ValuePtr memo(uint64_t key) const {
    const auto it = memo_.find(key);
    DINO_CHECK(it != memo_.end(), "[", path_, "] damaged pickle: memo entry ", key,
               " read before it is written");
    return it->second;
  }

  static ValuePtr tuple(std::vector<ValuePtr> items) {
    ValuePtr v = make(Value::Kind::tuple);
    v->items = std::move(items);
    return v;
  }
  static ValuePtr boolean(bool b) {
    ValuePtr v = make(Value::Kind::boolean);
    v->boolean = b;
    return v;
  }
  static ValuePtr integer(int64_t i) {
    ValuePtr v = make(Value::Kind::integer);
    v->integer = i;
    return v;
  }
  ValuePtr long1() {
    const size_t n = byte();
    DINO_CHECK(n <= 8, "[", path_, "] data.pkl holds an integer of ", n, " bytes, beyond 64 bits");
    const unsigned char* p = bytes(n);
    uint64_t u = le(p, int(n));
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
    return integer(int64_t(u));
  }
  ValuePtr binfloat() {
    const unsigned char* p = bytes(8);
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];  // big-endian
    ValuePtr v = make(Value::Kind::real);
    std::memcpy(&v->real, &u, 8);
    return v;
  }
  ValuePtr string(uint64_t n) {
    ValuePtr v = make(Value::Kind::string);
    const unsigned char* p = bytes(n);
    v->text.assign(reinterpret_cast<const char*>(p), n);
    return v;
  }

  // The only names a state dict or DINO checkpoint pickles; anything else is refused here,
  // before it could be used.
  ValuePtr global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    const bool storage = module == "torch" && storage_element_size(name) > 0;
    const bool known = storage || full == "collections.OrderedDict" ||
                       full == "torch._utils._rebuild_tensor_v2" ||
                       full == "torch._utils._rebuild_parameter" || full == "argparse.Namespace";
    DINO_CHECK(known, "[", path_, "] the pickle names ", printable(full),
               ", which a tensor state dict does not "
               "hold; this reader takes state dicts (torch.save(model.state_dict())) and DINO "
               "training checkpoints, and executes nothing");
    ValuePtr v = make(Value::Kind::global);
    v->text = full;
    return v;
  }

  // torch.save's persistent id: ('storage', storage type, key, location, numel).
  ValuePtr persistent_load(const ValuePtr& pid) {
    DINO_CHECK(pid->kind == Value::Kind::tuple && pid->items.size() == 5 &&
                   pid->items[0]->kind == Value::Kind::string && pid->items[0]->text == "storage" &&
                   pid->items[1]->kind == Value::Kind::global &&
                   pid->items[2]->kind == Value::Kind::string &&
                   pid->items[4]->kind == Value::Kind::integer,
               "[", path_, "] a persistent id that is not a tensor storage: ", pid->describe());
    ValuePtr v = make(Value::Kind::storage);
    v->tensor.storage_type = pid->items[1]->text.substr(6);  // after "torch."
    v->tensor.storage_key = pid->items[2]->text;
    v->tensor.storage_numel = pid->items[4]->integer;
    return v;
  }

  static bool is_int_tuple(const Value& v) {
    if (v.kind != Value::Kind::tuple) return false;
    for (const ValuePtr& i : v.items)
      if (i->kind != Value::Kind::integer) return false;
    return true;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args) {
    DINO_CHECK(callable->kind == Value::Kind::global && args->kind == Value::Kind::tuple, "[",
               path_, "] damaged pickle: REDUCE of ", callable->describe());
    const std::string& f = callable->text;
    const auto& a = args->items;
    if (f == "collections.OrderedDict") {
      DINO_CHECK(a.empty(), "[", path_, "] OrderedDict built from arguments (", args->describe(),
                 ")");
      return make(Value::Kind::dict);
    }
    if (f == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      DINO_CHECK(a.size() >= 6 && a[0]->kind == Value::Kind::storage &&
                     a[1]->kind == Value::Kind::integer && is_int_tuple(*a[2]) &&
                     is_int_tuple(*a[3]) && a[2]->items.size() == a[3]->items.size(),
                 "[", path_, "] a tensor with unexpected arguments: ", args->describe());
      ValuePtr t = make(Value::Kind::tensor);
      t->tensor = a[0]->tensor;
      t->tensor.offset = a[1]->integer;
      int64_t numel = 1;
      for (size_t d = 0; d < a[2]->items.size(); ++d) {
        const int64_t size = a[2]->items[d]->integer;
        // Checked here, before any shape is used: no view holds more elements than its
        // storage (torch.save writes broadcast views as their storage, not expanded).
        DINO_CHECK(size >= 0 && (size == 0 || numel <= t->tensor.storage_numel / size), "[", path_,
                   "] a tensor's dimension ", d, " of size ", size,
                   " gives it more elements than its storage of ", t->tensor.storage_numel,
                   " (damaged file)");
        numel *= size;
        t->tensor.shape.push_back(size);
        t->tensor.stride.push_back(a[3]->items[d]->integer);
      }
      return t;
    }
    if (f == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      DINO_CHECK(!a.empty() && a[0]->kind == Value::Kind::tensor, "[", path_,
                 "] a parameter that holds no tensor: ", args->describe());
      return a[0];
    }
    throw Error(str_cat("[", path_, "] the pickle calls ", f, ", which this reader does not"));
  }

  ValuePtr new_object(const ValuePtr& cls, const ValuePtr& args) {
    DINO_CHECK(cls->kind == Value::Kind::global && cls->text == "argparse.Namespace" &&
                   args->kind == Value::Kind::tuple && args->items.empty(),
               "[", path_, "] the pickle creates ", cls->describe(),
               ", which this reader does not");
    ValuePtr v = make(Value::Kind::object);
    v->text = cls->text;
    return v;
  }

  void build(const ValuePtr& target, const ValuePtr& state) {
    if (target->kind == Value::Kind::object && state->kind == Value::Kind::dict) {
      target->entries = state->entries;  // a Namespace's attributes
      return;
    }
    // A state dict's OrderedDict carries its version numbers as an attribute (_metadata).
    DINO_CHECK(target->kind == Value::Kind::dict && state->kind == Value::Kind::dict, "[", path_,
               "] the pickle sets the state of ", target->describe(), " to ", state->describe());
  }

  void set_items(const ValuePtr& dict, const std::vector<ValuePtr>& kv) {
    DINO_CHECK(dict->kind == Value::Kind::dict && kv.size() % 2 == 0, "[", path_,
               "] damaged pickle: SETITEMS on ", dict->describe());
    for (size_t i = 0; i < kv.size(); i += 2) dict->entries.push_back({kv[i], kv[i + 1]});
  }

  void append(const ValuePtr& list, const std::vector<ValuePtr>& vs) {
    DINO_CHECK(list->kind == Value::Kind::list, "[", path_, "] damaged pickle: APPEND to ",
               list->describe());
    list->items.insert(list->items.end(), vs.begin(), vs.end());
  }

  const std::string& data_;
  const std::string& path_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
};

}  // namespace

std::string printable(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 32 && c < 127)
      out += char(c);
    else
      out += {'\\', 'x', digits[c >> 4], digits[c & 15]};
  }
  return out;
}

const Value* Value::get(const std::string& key) const {
  if (kind != Kind::dict && kind != Kind::object) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::string && k->text == key) return v.get();
  return nullptr;
}

std::string Value::describe() const {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return boolean ? "True" : "False";
    case Kind::integer: return std::to_string(integer);
    case Kind::real: return str_cat(real);
    case Kind::string: return "'" + printable(text) + "'";
    case Kind::tuple: return str_cat("a tuple of ", items.size());
    case Kind::list: return str_cat("a list of ", items.size());
    case Kind::dict: return str_cat("a dict of ", entries.size(), " entries");
    case Kind::tensor:
      return str_cat("a tensor ", shape_str(tensor.shape), " (", tensor.storage_type, ")");
    case Kind::object: return "a " + printable(text) + " object";
    case Kind::global: return printable(text);
    case Kind::storage: return "a " + tensor.storage_type;
  }
  return "?";
}

File::File(const std::string& path) : path_(path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DINO_CHECK(f, "[", path, "] cannot open file");
  const uint64_t size = uint64_t(f.tellg());
  auto read_at = [&](uint64_t offset, size_t n) {
    DINO_CHECK(offset <= size && n <= size - offset, "[", path, "] truncated zip archive (", n,
               " bytes at ", offset, " in a file of ", size, ")");
    std::string buf(n, '\0');
    f.seekg(std::streamoff(offset));
    f.read(buf.data(), std::streamsize(n));
    DINO_CHECK(f, "[", path, "] cannot read ", n, " bytes at ", offset);
    return buf;
  };
  auto u = [](const std::string& s, size_t at, int bytes) {
    return le(reinterpret_cast<const unsigned char*>(s.data()) + at, bytes);
  };
  const std::string head = read_at(0, size_t(std::min<uint64_t>(size, 4)));
  DINO_CHECK(
      head.size() == 4 && head.compare(0, 4, "PK\x03\x04") == 0, "[", path,
      "] is not a zip "
      "archive: ",
      head.size() >= 2 && uint8_t(head[0]) == 0x80 && uint8_t(head[1]) <= 5
          ? "it is PyTorch's pre-1.6 format (or _use_new_zipfile_serialization=False); load and "
            "save it again with a recent PyTorch"
          : "not a file torch.save writes");

  // End of central directory: its 22 bytes plus a comment of up to 64 KiB end the file.
  const size_t tail_size = size_t(std::min<uint64_t>(size, 22 + 65535 + 20));
  const std::string tail = read_at(size - tail_size, tail_size);
  size_t eocd = std::string::npos;
  for (size_t i = tail_size >= 22 ? tail_size - 22 + 1 : 0; i-- > 0;)
    if (tail.compare(i, 4, "PK\x05\x06") == 0) {
      eocd = i;
      break;
    }
  DINO_CHECK(eocd != std::string::npos, "[", path,
             "] damaged zip archive: no end-of-directory record");
  uint64_t entries = u(tail, eocd + 10, 2), cd_size = u(tail, eocd + 12, 4),
           cd_offset = u(tail, eocd + 16, 4);
  if (eocd >= 20 && tail.compare(eocd - 20, 4, "PK\x06\x07") == 0) {  // zip64 locator
    const std::string z = read_at(u(tail, eocd - 20 + 8, 8), 56);
    DINO_CHECK(z.compare(0, 4, "PK\x06\x06") == 0, "[", path, "] damaged zip64 directory record");
    entries = u(z, 32, 8);
    cd_size = u(z, 40, 8);
    cd_offset = u(z, 48, 8);
  }
  const std::string cd = read_at(cd_offset, size_t(cd_size));
  size_t at = 0;
  std::vector<std::pair<std::string, uint64_t>> local_headers;
  for (uint64_t e = 0; e < entries; ++e) {
    DINO_CHECK(at + 46 <= cd.size() && cd.compare(at, 4, "PK\x01\x02") == 0, "[", path,
               "] damaged zip directory at entry ", e);
    const uint64_t method = u(cd, at + 10, 2), name_len = u(cd, at + 28, 2),
                   extra_len = u(cd, at + 30, 2), comment_len = u(cd, at + 32, 2);
    uint64_t csize = u(cd, at + 20, 4), usize = u(cd, at + 24, 4), offset = u(cd, at + 42, 4);
    DINO_CHECK(at + 46 + name_len + extra_len <= cd.size(), "[", path,
               "] damaged zip directory at entry ", e);
    const std::string name = cd.substr(at + 46, name_len);
    // zip64 sizes and offsets live in extra field 0x0001, in this order, for each 0xffffffff.
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = u(cd, x, 2), len = u(cd, x + 2, 2);
      size_t p = x + 4;
      if (id == 1) {
        for (uint64_t* field : {&usize, &csize, &offset})
          if (*field == 0xffffffffu && p + 8 <= x + 4 + len) {
            *field = u(cd, p, 8);
            p += 8;
          }
      }
      x += 4 + len;
    }
    DINO_CHECK(method == 0 && csize == usize, "[", path, "] zip entry ", printable(name),
               " is compressed (method ", method, "); torch.save stores its entries uncompressed");
    records_[name] = {offset, usize};
    local_headers.push_back({name, offset});
    at += 46 + name_len + extra_len + comment_len;
  }
  // Each entry's data follows its local header, whose name and extra lengths may differ from
  // the directory's.
  for (const auto& [name, offset] : local_headers) {
    const std::string lh = read_at(offset, 30);
    DINO_CHECK(lh.compare(0, 4, "PK\x03\x04") == 0, "[", path, "] damaged zip entry ",
               printable(name));
    Record& r = records_[name];
    r.offset = offset + 30 + u(lh, 26, 2) + u(lh, 28, 2);
    DINO_CHECK(r.offset <= size && r.size <= size - r.offset, "[", path, "] zip entry ",
               printable(name), " runs past the end of the file");
  }

  for (const auto& [name, record] : records_) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      DINO_CHECK(prefix_.empty(), "[", path, "] holds more than one data.pkl");
      prefix_ = name.substr(0, slash + 1);
    }
  }
  if (prefix_.empty()) {
    for (const auto& kv : records_)
      DINO_CHECK(kv.first.find("constants.pkl") == std::string::npos, "[", path,
                 "] is a TorchScript archive (torch.jit.save), not a state dict: save "
                 "model.state_dict() with torch.save");
    throw Error(
        str_cat("[", path, "] is a zip archive without data.pkl: not a file torch.save writes"));
  }
  if (records_.count(prefix_ + "byteorder"))
    DINO_CHECK(read_record(prefix_ + "byteorder") == "little", "[", path,
               "] was saved on a big-endian machine; this reader takes little-endian files");

  const std::string pickle = read_record(prefix_ + "data.pkl");
  root_ = Unpickler(pickle, path_).run();
}

std::string File::read_record(const std::string& name) const {
  const auto it = records_.find(name);
  DINO_CHECK(it != records_.end(), "[", path_, "] no record ", printable(name), " in the archive");
  std::ifstream f(path_, std::ios::binary);
  std::string buf(size_t(it->second.size), '\0');
  f.seekg(std::streamoff(it->second.offset));
  f.read(buf.data(), std::streamsize(buf.size()));
  DINO_CHECK(f, "[", path_, "] cannot read ", name);
  return buf;
}

Tensor File::tensor(const TensorRef& t, const std::string& name) const {
  const size_t elem = storage_element_size(t.storage_type);
  const std::string& type = t.storage_type;
  DINO_CHECK(type == "FloatStorage" || type == "DoubleStorage" || type == "HalfStorage" ||
                 type == "BFloat16Storage",
             "[", path_, "] tensor '", name, "' holds ", type,
             " values; weights must be floating point");
  const std::string bytes = read_record(prefix_ + "data/" + t.storage_key);
  DINO_CHECK(bytes.size() == size_t(t.storage_numel) * elem, "[", path_, "] storage ",
             printable(t.storage_key), " of '", name, "' has ", bytes.size(), " bytes for ",
             t.storage_numel, " ", type, " values");
  // The last element a view reaches must lie inside its storage.
  int64_t last = t.offset;
  bool empty = false;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    DINO_CHECK(t.shape[d] >= 0 && t.stride[d] >= 0, "[", path_, "] tensor '", name,
               "' has a negative size or stride");
    if (t.shape[d] == 0)
      empty = true;
    else
      last += (t.shape[d] - 1) * t.stride[d];
  }
  DINO_CHECK(t.offset >= 0 && (empty || last < t.storage_numel), "[", path_, "] tensor '", name,
             "' ", shape_str(t.shape), " at offset ", t.offset, " reaches past its storage of ",
             t.storage_numel, " values");
  Tensor out = Tensor::empty(t.shape);
  float* dst = out.data<float>();
  const char* src = bytes.data();
  auto load = [&](int64_t i) -> float {
    const char* p = src + size_t(i) * elem;
    if (type == "FloatStorage") {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    if (type == "DoubleStorage") {
      double v;
      std::memcpy(&v, p, 8);
      return float(v);
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    if (type == "HalfStorage") return half_to_float(h);
    const uint32_t bits = uint32_t(h) << 16;  // bfloat16: the top half of a float
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  };
  // Row-major walk over the shape, the storage index following the strides.
  const int64_t n = out.numel(), dims = int64_t(t.shape.size());
  std::vector<int64_t> index(size_t(dims), 0);
  int64_t source = t.offset;
  for (int64_t k = 0; k < n; ++k) {
    dst[k] = load(source);
    for (int64_t d = dims - 1; d >= 0; --d) {
      if (++index[size_t(d)] < t.shape[size_t(d)]) {
        source += t.stride[size_t(d)];
        break;
      }
      source -= (t.shape[size_t(d)] - 1) * t.stride[size_t(d)];
      index[size_t(d)] = 0;
    }
  }
  return out;
}

}  // namespace dino::pth
