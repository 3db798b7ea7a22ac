// safetensors round trip, atomic writes, and clear errors on damaged files.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/rng.h"
#include "core/safetensors.h"

using namespace dino;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("dino_tests-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype, order and metadata", "[safetensors]") {
  Rng rng(3);
  Tensor a = Tensor::randn({3, 5}, rng);
  Tensor b = Tensor::randn({2, 1, 4}, rng, 1.0, DType::f64);
  Tensor c = Tensor::randn({7}, rng).to(DType::bf16);
  Tensor d = Tensor::full({2, 2}, -7, DType::i32);
  Tensor e = Tensor::full({3}, 200, DType::u8);
  Tensor s = Tensor::scalar(2.5);
  const std::string path = temp_path("roundtrip.safetensors");
  save_safetensors(path, {{"z.first", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}, {"s", s}},
                   {{"step", "12"}, {"config", "{\"k\": 1}"}});
  CHECK_FALSE(fs::exists(path + ".tmp"));
  SafeTensors st = load_safetensors(path);
  REQUIRE(st.tensors.size() == 6);
  CHECK(st.tensors[0].first == "z.first");  // file order kept
  CHECK(st.metadata.at("step") == "12");
  CHECK(st.metadata.at("config") == "{\"k\": 1}");
  for (auto [name, orig] : std::vector<std::pair<std::string, Tensor>>{
           {"z.first", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}, {"s", s}}) {
    const Tensor& got = st.at(name);
    INFO(name);
    CHECK(got.shape() == orig.shape());
    CHECK(got.dtype() == orig.dtype());
    CHECK(std::memcmp(got.raw_data(), orig.raw_data(), orig.nbytes()) == 0);
  }
  CHECK_THROWS_WITH(st.at("missing"), Catch::Contains("missing"));
}

TEST_CASE("damaged safetensors files are rejected with the path in the message", "[safetensors]") {
  Rng rng(4);
  const std::string good = temp_path("good.safetensors");
  save_safetensors(good, {{"w", Tensor::randn({64, 8}, rng)}});
  const std::string bytes = read_all(good);

  const std::string truncated = temp_path("truncated.safetensors");
  write_all(truncated, bytes.substr(0, bytes.size() - 100));
  CHECK_THROWS_WITH(load_safetensors(truncated),
                    Catch::Contains(truncated) && Catch::Contains("outside"));

  const std::string tiny = temp_path("tiny.safetensors");
  write_all(tiny, "abc");
  CHECK_THROWS_WITH(load_safetensors(tiny), Catch::Contains("truncated"));

  std::string bad_len = bytes;
  bad_len[7] = char(0x7f);  // header length far beyond the file
  const std::string huge = temp_path("huge_header.safetensors");
  write_all(huge, bad_len);
  CHECK_THROWS_WITH(load_safetensors(huge), Catch::Contains("corrupt header"));

  std::string bad_json = bytes;
  bad_json[8] = '[';
  bad_json[9] = '}';
  const std::string json = temp_path("bad_json.safetensors");
  write_all(json, bad_json);
  CHECK_THROWS_WITH(load_safetensors(json), Catch::Contains("corrupt header"));

  CHECK_THROWS_WITH(load_safetensors(temp_path("does_not_exist.safetensors")),
                    Catch::Contains("cannot open"));
}

TEST_CASE("a failed save leaves no file behind", "[safetensors]") {
  const std::string path = "/nonexistent_dir_for_dino/x.safetensors";
  CHECK_THROWS_WITH(save_safetensors(path, {{"a", Tensor::zeros({2})}}),
                    Catch::Contains("cannot create"));
  CHECK_FALSE(fs::exists(path));
}

namespace {

// A file of `header` (padded to 8 bytes) and `data_bytes` zero bytes after it.
std::string hand_made(const std::string& name, std::string header, size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  bytes += header + std::string(data_bytes, '\0');
  const std::string path = temp_path(name);
  write_all(path, bytes);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "loaded";
}

}  // namespace

TEST_CASE("safetensors: the header is validated against the data before anything is allocated",
          "[safetensors]") {
  // The format's own example layout: two tensors tiling 24 bytes.
  const std::string ok = hand_made("ok.st",
                                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}})",
                                   24);
  CHECK(load_error(ok) == "loaded");
  // Tensors sharing bytes: b would read a's data.
  CHECK_THAT(load_error(hand_made("overlap.st",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                  8)),
             Catch::Contains("overlaps tensor 'a'"));
  CHECK_THAT(load_error(hand_made("overlap2.st",
                                  R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                  16)),
             Catch::Contains("overlaps"));
  // Bytes that belong to no tensor, between tensors or after the last one.
  CHECK_THAT(load_error(hand_made("gap.st",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
                                  24)),
             Catch::Contains("8 data bytes before tensor 'b' belong to no tensor"));
  CHECK_THAT(load_error(hand_made("tail.st",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 16)),
             Catch::Contains("cover 8 of the 16 data bytes"));
  // A shape of 2^38 elements against 8 bytes of data: refused, not allocated (no bad_alloc).
  CHECK_THAT(
      load_error(hand_made(
          "huge.st", R"({"a":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,8]}})", 8)),
      Catch::Contains("more than the 8 data bytes"));
  // Shapes whose products overflow 64 bits.
  CHECK_THAT(
      load_error(hand_made(
          "overflow.st",
          R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8)),
      Catch::Contains("more than"));
  CHECK_THAT(load_error(hand_made(
                 "mismatch.st", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16)),
             Catch::Contains("has 16 bytes for shape [3] F32, which needs 12"));
  CHECK_THAT(load_error(hand_made("negative.st",
                                  R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
             Catch::Contains("not a size"));
  CHECK_THAT(load_error(hand_made("offsets.st",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
             Catch::Contains("outside"));
  CHECK_THAT(load_error(hand_made(
                 "offsets3.st", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 8)),
             Catch::Contains("is not [begin, end]"));
  CHECK_THAT(
      load_error(hand_made("float_offsets.st",
                           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", 8)),
      Catch::Contains("not a non-negative integer"));
  CHECK_THAT(load_error(hand_made("dtype.st",
                                  R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", 8)),
             Catch::Contains("unsupported dtype F16"));
  CHECK_THAT(load_error(hand_made("entry.st", R"({"a":[1,2,3]})", 0)),
             Catch::Contains("needs an object"));
  CHECK_THAT(load_error(hand_made("meta.st", R"({"__metadata__":{"step":3}})", 0)),
             Catch::Contains("metadata 'step' is not a string"));
  CHECK_THAT(load_error(hand_made("meta2.st", R"({"__metadata__":[1]})", 0)),
             Catch::Contains("__metadata__ is not an object"));
  // Empty tensors take no bytes and may sit anywhere in order.
  CHECK(load_error(hand_made("empty.st",
                             R"({"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},)"
                             R"("a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                             8)) == "loaded");
}

TEST_CASE("safetensors: a save onto a folder fails and leaves no temporary file", "[safetensors]") {
  const std::string dir = temp_path("a_folder.safetensors");
  fs::create_directories(dir);
  CHECK_THROWS_WITH(save_safetensors(dir, {{"a", Tensor::zeros({2})}}),
                    Catch::Contains("is a folder"));
  CHECK_FALSE(fs::exists(dir + ".tmp"));
}
