#include "core/npy.h"

#include "core/atomic_file.h"

namespace dino {

namespace {

// Magic, version 1.0, header length, then the header dict padded with spaces to a multiple
// of 64 bytes and ended by a newline, as numpy writes it.
void write_npy(const std::string& path, const char* descr, const Shape& shape, const void* data,
               size_t nbytes) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // (n,) keeps its comma
  std::string header =
      str_cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", dims, "), }");
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const uint16_t len = uint16_t(header.size());
  const char preamble[10] = {'\x93',           'N',           'U', 'M', 'P', 'Y', 1, 0,
                             char(len & 0xff), char(len >> 8)};
  AtomicFile f(path);
  f.write(preamble, 10);
  f.write(header.data(), header.size());
  f.write(data, nbytes);
  f.commit();
}

}  // namespace

void save_npy(const std::string& path, const Tensor& t) {
  DINO_CHECK(t.defined(), "[", path, "] no tensor to write");
  const Tensor host = t.to(Device::cpu).to(DType::f32);
  write_npy(path, "<f4", host.shape(), host.raw_data(), host.nbytes());
}

void save_npy(const std::string& path, const std::vector<int64_t>& values) {
  write_npy(path, "<i8", {int64_t(values.size())}, values.data(), values.size() * sizeof(int64_t));
}

}  // namespace dino
