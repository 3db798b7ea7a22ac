#include "core/safetensors.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace dino {

namespace {

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

DType parse_dtype(const std::string& s, const std::string& path, const std::string& name) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "BF16") return DType::bf16;
  if (s == "I32") return DType::i32;
  if (s == "U8") return DType::u8;
  throw Error(str_cat("[", path, "] tensor '", name, "' has unsupported dtype ", s));
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
    DINO_CHECK(!header.contains(name), "[", path, "] duplicate tensor name '", name, "'");
    host.push_back(t.to(Device::cpu));
    header[name] = {{"dtype", st_dtype(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    DINO_CHECK(f, "[", path, "] cannot open '", tmp, "' for writing");
    uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(text.data(), std::streamsize(text.size()));
    for (const Tensor& t : host) f.write(static_cast<const char*>(t.raw_data()), std::streamsize(t.nbytes()));
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      throw Error(str_cat("[", path, "] write failed (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(str_cat("[", path, "] cannot rename the temporary file into place"));
  }
}

SafeTensors load_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DINO_CHECK(f, "[", path, "] cannot open file");
  const uint64_t file_size = uint64_t(f.tellg());
  f.seekg(0);
  DINO_CHECK(file_size >= 8, "[", path, "] truncated: ", file_size, " bytes, not a safetensors file");
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  DINO_CHECK(n <= file_size - 8 && n <= (uint64_t(100) << 20), "[", path, "] corrupt header: "
             "header length ", n, " does not fit a file of ", file_size, " bytes");
  std::string text(n, '\0');
  f.read(text.data(), std::streamsize(n));
  nlohmann::ordered_json header;  // ordered: tensors come back in file order
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[", path, "] corrupt header: ", e.what()));
  }
  DINO_CHECK(header.is_object(), "[", path, "] corrupt header: not a JSON object");
  const uint64_t data_size = file_size - 8 - n;
  SafeTensors out;
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it->begin(); m != it->end(); ++m) out.metadata[m.key()] = m->get<std::string>();
        continue;
      }
      const auto& e = it.value();
      const DType dt = parse_dtype(e.at("dtype").get<std::string>(), path, it.key());
      const Shape shape = e.at("shape").get<Shape>();
      const auto offs = e.at("data_offsets").get<std::vector<uint64_t>>();
      DINO_CHECK(offs.size() == 2 && offs[0] <= offs[1] && offs[1] <= data_size, "[", path,
                 "] tensor '", it.key(), "' data [", offs.at(0), ", ", offs.at(1),
                 ") lies outside the ", data_size, " data bytes (truncated file?)");
      Tensor t = Tensor::empty(shape, dt);
      DINO_CHECK(offs[1] - offs[0] == t.nbytes(), "[", path, "] tensor '", it.key(), "' has ",
                 offs[1] - offs[0], " bytes for shape ", shape_str(shape), " ", dtype_name(dt));
      out.tensors.push_back({it.key(), t});
      f.seekg(std::streamoff(8 + n + offs[0]));
      f.read(static_cast<char*>(t.raw_data()), std::streamsize(t.nbytes()));
      DINO_CHECK(f, "[", path, "] read failed for tensor '", it.key(), "'");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[", path, "] corrupt header: ", e.what()));
  }
  return out;
}

}  // namespace dino
