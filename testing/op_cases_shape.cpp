// The data-movement ops: permute (the gather and the tiled-transpose paths, size-1 dims, 5
// dims), transpose_last2, concat along dim 0, and the ViT's [CLS]-token ops prepend_token and
// select_token, each in f32 and bf16 (the output keeps the input's dtype); then the ViT's token
// path, whose position-embedding gradient is sum_to's (B, N+1, D) -> (1, N+1, D).
#include "core/error.h"
#include "core/ops.h"
#include "testing/op_cases.h"

namespace dino::testing {

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace

void add_shape_cases(std::vector<OpCase>& c) {
  const std::pair<Shape, std::vector<int64_t>> permutes[] = {
      {{197, 33}, {1, 0}},                 // a plain transpose (tiled)
      {{2, 197, 384}, {0, 2, 1}},          // batched transpose (tiled)
      {{4, 65, 70}, {2, 0, 1}},            // collapses to a transpose of (4*65, 70)
      {{2, 3, 37, 5}, {0, 2, 1, 3}},       // heads <-> tokens: a gather with an inner run
      {{2, 3, 37, 5}, {3, 1, 2, 0}},       // a general gather
      {{1, 37, 1, 33}, {2, 3, 0, 1}},      // size-1 dims dropped
      {{2, 3, 4, 5, 6}, {4, 2, 0, 3, 1}},  // 5 dims
      {{3, 1, 5}, {1, 0, 2}},              // only a size-1 dim moves: a copy
      {{1}, {0}},
  };
  for (const auto& [shape, dims] : permutes)
    for (const DType dt : {F, H})
      c.push_back(op_case(
          "permute", {{shape, dt}},
          [dims = dims](const Inputs& in) { return permute(in[0], dims); }, dt, dims_str(dims)));
  for (const Shape& s : {Shape{3, 37, 33}, Shape{197, 384}, Shape{1, 1, 5}, Shape{2, 3, 33, 1}})
    for (const DType dt : {F, H})
      c.push_back(op_case(
          "transpose_last2", {{s, dt}}, [](const Inputs& in) { return transpose_last2(in[0]); },
          dt));

  for (const DType dt : {F, H}) {
    c.push_back(op_case(
        "concat", {{{2, 33}, dt}, {{1, 33}, dt, false}, {{37, 33}, dt}},
        [](const Inputs& in) {
          return concat({in[0], in[1], in[2]});
        },
        dt));
    c.push_back(op_case(
        "concat", {{{4, 197, 384}, dt}, {{4, 197, 384}, dt}},
        [](const Inputs& in) {
          return concat({in[0], in[1]});
        },
        dt));
  }

  const int64_t tokens[][3] = {{2, 196, 384}, {1, 37, 33}, {3, 1, 1}, {5, 49, 65}};  // B, N, D
  for (const auto& t : tokens) {
    const int64_t B = t[0], N = t[1], D = t[2];
    for (const DType dt : {F, H}) {
      c.push_back(op_case(
          "prepend_token", {{{B, N, D}, dt}, {{1, 1, D}, dt}},
          [](const Inputs& in) { return prepend_token(in[0], in[1]); }, dt));
      for (const int64_t i : N > 1 ? std::vector<int64_t>{0, N - 1} : std::vector<int64_t>{0})
        c.push_back(op_case(
            "select_token", {{{B, N, D}, dt}},
            [i](const Inputs& in) { return select_token(in[0], i); }, dt, str_cat("token ", i)));
    }
  }

  // x (B, N, D) -> prepend cls (1, 1, D) -> + pos_embed (1, N+1, D) f32 -> gelu -> token 0.
  for (const DType dt : {F, H})
    c.push_back(op_case(
        "token_path", {{{4, 196, 384}, dt}, {{1, 1, 384}, dt}, {{1, 197, 384}, F}},
        [](const Inputs& in) {
          const Tensor t = add(prepend_token(in[0], in[1]), in[2]);
          return select_token(gelu(t), 0);
        },
        F, "(cls token, position embedding, gelu, cls output)"));
}

}  // namespace dino::testing
