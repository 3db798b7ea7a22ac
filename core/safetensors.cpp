#include "core/safetensors.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"

namespace dino {

namespace {

// The header may not be larger than this (the format's own readers use the same bound).
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

// One tensor as the header describes it, checked against the data section's size.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // byte offsets into the data section
};

DType parse_dtype(const nlohmann::ordered_json& v, const std::string& file,
                  const std::string& name) {
  DINO_CHECK(v.is_string(), "[", file, "] tensor '", name, "': dtype ", v.dump(),
             " is not a string");
  const std::string s = v.get<std::string>();
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "BF16") return DType::bf16;
  if (s == "I32") return DType::i32;
  if (s == "U8") return DType::u8;
  throw Error(str_cat("[", file, "] tensor '", name, "' has unsupported dtype ", s,
                      " (supported: F32, F64, BF16, I32, U8)"));
}

uint64_t parse_offset(const nlohmann::ordered_json& v, const std::string& file,
                      const std::string& name) {
  DINO_CHECK(v.is_number_unsigned(), "[", file, "] tensor '", name, "': data offset ", v.dump(),
             " is not a non-negative integer");
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const nlohmann::ordered_json& e, uint64_t data_size,
                  const std::string& file) {
  DINO_CHECK(
      e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
      "[", file, "] corrupt header: tensor '", name,
      "' needs an object with dtype, shape and data_offsets, got ", e.dump().substr(0, 200));
  Entry out{name, parse_dtype(e["dtype"], file, name), {}, 0, 0};
  const auto& shape = e["shape"];
  const auto& offs = e["data_offsets"];
  DINO_CHECK(shape.is_array(), "[", file, "] tensor '", name, "': shape ", shape.dump(),
             " is not a list");
  DINO_CHECK(offs.is_array() && offs.size() == 2, "[", file, "] tensor '", name, "': data_offsets ",
             offs.dump(), " is not [begin, end]");
  out.begin = parse_offset(offs[0], file, name);
  out.end = parse_offset(offs[1], file, name);
  DINO_CHECK(out.begin <= out.end && out.end <= data_size, "[", file, "] tensor '", name,
             "' data [", out.begin, ", ", out.end, ") lies outside the ", data_size,
             " data bytes (truncated file?)");
  // The byte size from the shape, never larger than the data section: no product overflows
  // and nothing is allocated for a shape the file cannot hold. An empty tensor (a 0 in its
  // shape) holds no bytes; its other sizes are only kept from overflowing.
  const uint64_t elem = uint64_t(dtype_size(out.dtype));
  bool empty = false;
  for (const auto& d : shape) {
    DINO_CHECK(d.is_number_unsigned(), "[", file, "] tensor '", name, "': shape ", shape.dump(),
               " holds ", d.dump(), ", not a size");
    empty |= d.get<uint64_t>() == 0;
  }
  const uint64_t limit = empty ? uint64_t(1) << 62 : data_size;
  uint64_t bytes = elem;
  for (const auto& d : shape) {
    const uint64_t n = d.get<uint64_t>();
    if (n == 0) continue;
    DINO_CHECK(n <= limit / bytes, "[", file, "] tensor '", name, "' has shape ", shape.dump(), " ",
               st_dtype(out.dtype), ", more than the ", data_size, " data bytes of the file");
    bytes *= n;
  }
  for (const auto& d : shape) out.shape.push_back(int64_t(d.get<uint64_t>()));
  if (empty) bytes = 0;
  DINO_CHECK(out.end - out.begin == bytes, "[", file, "] tensor '", name, "' has ",
             out.end - out.begin, " bytes for shape ", shape.dump(), " ", st_dtype(out.dtype),
             ", which needs ", bytes);
  return out;
}

// The format requires the tensors to tile the data section: in order, no overlap, no gap, up to
// its last byte. A file that breaks this could let one tensor read another's bytes.
void check_layout(std::vector<const Entry*> entries, uint64_t data_size, const std::string& file) {
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : entries) {
    DINO_CHECK(e->begin >= covered, "[", file, "] corrupt header: tensor '", e->name, "' [",
               e->begin, ", ", e->end, ") overlaps tensor '", previous ? previous->name : "", "'");
    DINO_CHECK(e->begin == covered, "[", file, "] corrupt header: ", e->begin - covered,
               " data bytes before tensor '", e->name, "' belong to no tensor");
    covered = e->end;
    previous = e;
  }
  DINO_CHECK(covered == data_size, "[", file, "] corrupt header: the tensors cover ", covered,
             " of the ", data_size, " data bytes");
}

}  // namespace

const Tensor* SafeTensors::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& SafeTensors::at(const std::string& name) const {
  const Tensor* t = find(name);
  DINO_CHECK(t, "[safetensors] no tensor named '", name, "' in the file");
  return *t;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    DINO_CHECK(t.defined(), "[", path, "] tensor '", name, "' is undefined");
    DINO_CHECK(name != "__metadata__" && !header.contains(name), "[", path,
               "] duplicate or reserved tensor name '", name, "'");
    host.push_back(t.to(Device::cpu));
    header[name] = {{"dtype", st_dtype(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  AtomicFile f(path);
  const uint64_t n = text.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
  f.write(len, 8);
  f.write(text.data(), text.size());
  for (const Tensor& t : host) f.write(t.raw_data(), t.nbytes());
  f.commit();
}

SafeTensors read_safetensors(std::istream& in, uint64_t size, const std::string& file) {
  DINO_CHECK(size >= 8, "[", file, "] truncated: ", size, " bytes, not a safetensors file");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  DINO_CHECK(in, "[", file, "] cannot read the header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  DINO_CHECK(n <= size - 8 && n <= kMaxHeaderBytes, "[", file,
             "] corrupt header: "
             "header length ",
             n, " does not fit a file of ", size, " bytes");
  std::string text(n, '\0');
  in.read(text.data(), std::streamsize(n));
  DINO_CHECK(in, "[", file, "] cannot read the ", n, "-byte header");
  DINO_CHECK(n > 0 && text[0] == '{', "[", file, "] corrupt header: it does not start with '{'");
  nlohmann::ordered_json header;  // ordered: tensors come back in file order
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[", file, "] corrupt header: ", e.what()));
  }
  DINO_CHECK(header.is_object(), "[", file, "] corrupt header: not a JSON object");
  const uint64_t data_size = size - 8 - n;

  SafeTensors out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() != "__metadata__") {
      entries.push_back(parse_entry(it.key(), it.value(), data_size, file));
      continue;
    }
    DINO_CHECK(it->is_object(), "[", file, "] corrupt header: __metadata__ is not an object");
    for (auto m = it->begin(); m != it->end(); ++m) {
      DINO_CHECK(m->is_string(), "[", file, "] corrupt header: metadata '", m.key(),
                 "' is not a string");
      out.metadata[m.key()] = m->get<std::string>();
    }
  }
  std::vector<const Entry*> layout;
  for (const Entry& e : entries) layout.push_back(&e);
  check_layout(layout, data_size, file);

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(std::streamoff(8 + n + e.begin));
    in.read(static_cast<char*>(t.raw_data()), std::streamsize(t.nbytes()));
    DINO_CHECK(in, "[", file, "] read failed for tensor '", e.name, "'");
    out.tensors.push_back({e.name, t});
  }
  return out;
}

SafeTensors load_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DINO_CHECK(f, "[", path, "] cannot open file");
  const std::streamoff size = f.tellg();
  DINO_CHECK(size >= 0, "[", path, "] cannot read (is it a folder?)");
  f.seekg(0);
  return read_safetensors(f, uint64_t(size), path);
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DINO_CHECK(f, "[", path, "] cannot open file");
  const uint64_t file_size = uint64_t(f.tellg());
  f.seekg(0);
  unsigned char len[8] = {};
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  DINO_CHECK(f && n <= file_size - 8 && n <= (uint64_t(100) << 20), "[", path,
             "] corrupt header: "
             "not a safetensors file");
  std::string text(n, '\0');
  f.read(text.data(), std::streamsize(n));
  std::map<std::string, std::string> out;
  try {
    const auto header = nlohmann::json::parse(text);
    if (header.contains("__metadata__"))
      for (auto m = header.at("__metadata__").begin(); m != header.at("__metadata__").end(); ++m)
        out[m.key()] = m->get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[", path, "] corrupt header: ", e.what()));
  }
  return out;
}

}  // namespace dino
