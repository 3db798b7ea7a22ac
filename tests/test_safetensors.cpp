// safetensors round trip, atomic writes, and clear errors on damaged files.
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
  fs::path dir = fs::temp_directory_path() / "dino_tests";
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
  CHECK_THROWS_WITH(load_safetensors(truncated), Catch::Contains(truncated) && Catch::Contains("outside"));

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
  CHECK_THROWS_WITH(save_safetensors(path, {{"a", Tensor::zeros({2})}}), Catch::Contains("cannot open"));
  CHECK_FALSE(fs::exists(path));
}
