// The data-movement ops on CUDA against the float64 CPU reference, forward and backward,
// through tests/cuda/op_check.h: permute (the gather and the tiled-transpose paths, size-1
// dims, 5 dims), transpose_last2, concat along dim 0, and the ViT's [CLS]-token ops
// prepend_token and select_token, each in f32 and bf16 (the output keeps the input's dtype).
#include "tests/cuda/op_check.h"

using namespace dino;
using namespace dino::test;

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

OpInput input(Shape s, DType dt, bool grad = true) {
  OpInput in;
  in.shape = std::move(s);
  in.cuda_dtype = dt;
  in.grad = grad;
  return in;
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace

TEST_CASE("permute and transpose_last2 on CUDA", "[ops][shape]") {
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const Case cases[] = {
      {{197, 33}, {1, 0}},                   // a plain transpose (tiled)
      {{2, 197, 384}, {0, 2, 1}},            // batched transpose (tiled)
      {{4, 65, 70}, {2, 0, 1}},              // collapses to a transpose of (4*65, 70)
      {{2, 3, 37, 5}, {0, 2, 1, 3}},         // heads <-> tokens: a gather with an inner run
      {{2, 3, 37, 5}, {3, 1, 2, 0}},         // a general gather
      {{1, 37, 1, 33}, {2, 3, 0, 1}},        // size-1 dims dropped
      {{2, 3, 4, 5, 6}, {4, 2, 0, 3, 1}},    // 5 dims
      {{3, 1, 5}, {1, 0, 2}},                // only a size-1 dim moves: a copy
      {{1}, {0}},
  };
  uint64_t seed = 1000;
  for (const Case& pc : cases) {
    for (DType dt : {F, H}) {
      OpCase c;
      c.name = "permute " + shape_str(pc.shape) + " " + dims_str(pc.dims) + " " + dtype_name(dt);
      c.inputs = {input(pc.shape, dt)};
      const std::vector<int64_t> dims = pc.dims;
      c.fn = [dims](const std::vector<Tensor>& in) { return permute(in[0], dims); };
      c.out_dtype = dt;
      check_op(c, seed++);
    }
  }
  const Shape tshapes[] = {{3, 37, 33}, {197, 384}, {1, 1, 5}, {2, 3, 33, 1}};
  for (const Shape& s : tshapes) {
    for (DType dt : {F, H}) {
      OpCase c;
      c.name = "transpose_last2 " + shape_str(s) + " " + dtype_name(dt);
      c.inputs = {input(s, dt)};
      c.fn = [](const std::vector<Tensor>& in) { return transpose_last2(in[0]); };
      c.out_dtype = dt;
      check_op(c, seed++);
    }
  }
}

TEST_CASE("concat along dim 0 on CUDA", "[ops][shape]") {
  uint64_t seed = 1100;
  for (DType dt : {F, H}) {
    OpCase c;
    c.name = std::string("concat (2, 33), (1, 33), (37, 33) ") + dtype_name(dt);
    c.inputs = {input({2, 33}, dt), input({1, 33}, dt, false), input({37, 33}, dt)};
    c.fn = [](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[2]}); };
    c.out_dtype = dt;
    check_op(c, seed++);
    c.name = std::string("concat (4, 197, 384) x 2 ") + dtype_name(dt);
    c.inputs = {input({4, 197, 384}, dt), input({4, 197, 384}, dt)};
    c.fn = [](const std::vector<Tensor>& in) { return concat({in[0], in[1]}); };
    check_op(c, seed++);
  }
}

TEST_CASE("prepend_token and select_token on CUDA", "[ops][shape]") {
  struct Case {
    int64_t B, N, D;
  };
  const Case cases[] = {{2, 196, 384}, {1, 37, 33}, {3, 1, 1}, {5, 49, 65}};
  uint64_t seed = 1200;
  for (const Case& s : cases) {
    for (DType dt : {F, H}) {
      const std::string tail =
          " B=" + std::to_string(s.B) + " N=" + std::to_string(s.N) + " D=" + std::to_string(s.D) +
          " " + dtype_name(dt);
      OpCase c;
      c.out_dtype = dt;
      c.name = "prepend_token" + tail;
      c.inputs = {input({s.B, s.N, s.D}, dt), input({1, 1, s.D}, dt)};
      c.fn = [](const std::vector<Tensor>& in) { return prepend_token(in[0], in[1]); };
      check_op(c, seed++);
      for (int64_t i : {int64_t(0), s.N - 1}) {
        c.name = "select_token " + std::to_string(i) + tail;
        c.inputs = {input({s.B, s.N, s.D}, dt)};
        c.fn = [i](const std::vector<Tensor>& in) { return select_token(in[0], i); };
        check_op(c, seed++);
      }
    }
  }
}

TEST_CASE("the ViT's token path on CUDA: cls token, position embedding, cls output",
          "[ops][shape]") {
  // x (B, N, D) f32 -> prepend cls (1, 1, D) -> + pos_embed (1, N+1, D) -> gelu -> token 0:
  // the pos_embed gradient is sum_to's (B, N+1, D) -> (1, N+1, D).
  uint64_t seed = 1300;
  for (DType dt : {F, H}) {
    OpCase c;
    c.name = std::string("token path x (4, 196, 384) ") + dtype_name(dt);
    c.inputs = {input({4, 196, 384}, dt), input({1, 1, 384}, dt), input({1, 197, 384}, F)};
    c.fn = [](const std::vector<Tensor>& in) {
      Tensor t = add(prepend_token(in[0], in[1]), in[2]);
      return select_token(gelu(t), 0);
    };
    c.out_dtype = F;  // bf16 tokens + f32 pos_embed: f32
    check_op(c, seed++);
  }
}

TEST_CASE("shape ops on CUDA reject what they cannot take", "[ops][shape]") {
  Tensor x = Tensor::full({2, 3, 4}, 1.0, F, Device::cuda);
  CHECK_THROWS_WITH(permute(x, {0, 0, 1}), Catch::Contains("[permute]"));
  CHECK_THROWS_WITH(prepend_token(x, Tensor::full({1, 1, 4}, 1.0, H, Device::cuda)),
                    Catch::Contains("[prepend_token]"));
  CHECK_THROWS_WITH(select_token(x, 3), Catch::Contains("[select_token]"));
  CHECK_THROWS_WITH(permute(Tensor::empty({2, 3}, DType::u8, Device::cuda), {1, 0}),
                    Catch::Contains("[permute]"));
}
