// One float64 central-difference gradient check per differentiable op, odd sizes included.
#include "tests/gradcheck.h"

using namespace dino;
using namespace dino::testing;

namespace {

Tensor rg(const Shape& s, Rng& rng, double lo = -1.0, double hi = 1.0) {
  Tensor t = random_f64(s, rng, lo, hi);
  t.set_requires_grad();
  return t;
}

}  // namespace

TEST_CASE("grad: add/sub/mul/div with broadcasting", "[grad]") {
  Rng rng(1);
  auto a = rg({3, 5, 7}, rng), b = rg({7}, rng), c = rg({3, 1, 7}, rng);
  gradcheck([](auto& in) { return add(in[0], in[1]); }, {a, b});
  gradcheck([](auto& in) { return sub(in[0], in[1]); }, {a, c});
  gradcheck([](auto& in) { return mul(in[0], in[1]); }, {a, c});
  auto pos = rg({3, 1, 7}, rng, 0.5, 2.0);
  gradcheck([](auto& in) { return div(in[0], in[1]); }, {a, pos});
}

TEST_CASE("grad: scale, add_scalar, exp, log, sqrt", "[grad]") {
  Rng rng(2);
  auto x = rg({4, 9}, rng), p = rg({4, 9}, rng, 0.3, 2.0);
  gradcheck([](auto& in) { return scale(in[0], -2.5); }, {x});
  gradcheck([](auto& in) { return add_scalar(in[0], 0.7); }, {x});
  gradcheck([](auto& in) { return exp(in[0]); }, {x});
  gradcheck([](auto& in) { return log(in[0]); }, {p});
  gradcheck([](auto& in) { return sqrt(in[0]); }, {p});
}

TEST_CASE("grad: gelu (erf)", "[grad]") {
  Rng rng(3);
  gradcheck([](auto& in) { return gelu(in[0]); }, {rg({37, 3}, rng, -4, 4)});
}

TEST_CASE("grad: sum, mean, sum_last, mean_last", "[grad]") {
  Rng rng(4);
  auto x = rg({5, 3, 7}, rng);
  gradcheck([](auto& in) { return sum(in[0]); }, {x});
  gradcheck([](auto& in) { return mean(in[0]); }, {x});
  gradcheck([](auto& in) { return sum_last(in[0]); }, {x});
  gradcheck([](auto& in) { return mean_last(in[0], false); }, {x});
}

TEST_CASE("grad: permute, transpose, reshape, narrow, chunk, concat", "[grad]") {
  Rng rng(5);
  auto x = rg({2, 3, 4, 5}, rng), y = rg({3, 3, 4, 5}, rng);
  gradcheck([](auto& in) { return permute(in[0], {2, 0, 3, 1}); }, {x});
  gradcheck([](auto& in) { return transpose_last2(in[0]); }, {x});
  gradcheck([](auto& in) { return in[0].reshape({6, -1}); }, {x});
  gradcheck([](auto& in) { return in[0].narrow(1, 2); }, {y});
  gradcheck([](auto& in) { return mul(in[0].chunk(3)[2], in[0].chunk(3)[0]); }, {y});
  gradcheck([](auto& in) { return concat({in[1], in[0], in[1]}); }, {x, y});
}

TEST_CASE("grad: prepend_token and select_token", "[grad]") {
  Rng rng(6);
  auto x = rg({3, 5, 7}, rng), tok = rg({1, 1, 7}, rng);
  gradcheck([](auto& in) { return prepend_token(in[0], in[1]); }, {x, tok});
  gradcheck([](auto& in) { return select_token(in[0], 2); }, {x});
}

TEST_CASE("grad: matmul, batched and with a shared right operand", "[grad]") {
  Rng rng(7);
  auto a = rg({2, 3, 5, 4}, rng), b = rg({2, 3, 4, 7}, rng), w = rg({4, 7}, rng);
  gradcheck([](auto& in) { return matmul(in[0], in[1]); }, {a, b});
  gradcheck([](auto& in) { return matmul(in[0], in[1]); }, {a, w});
}

TEST_CASE("grad: linear with and without bias", "[grad]") {
  Rng rng(8);
  auto x = rg({2, 37, 33}, rng), w = rg({5, 33}, rng), b = rg({5}, rng);
  gradcheck([](auto& in) { return linear(in[0], in[1], in[2]); }, {x, w, b});
  gradcheck([](auto& in) { return linear(in[0], in[1], Tensor()); }, {x, w});
}

TEST_CASE("grad: linear_gelu with and without bias", "[grad]") {
  Rng rng(18);
  auto x = rg({2, 7, 33}, rng), w = rg({5, 33}, rng), b = rg({5}, rng);
  gradcheck([](auto& in) { return linear_gelu(in[0], in[1], in[2]); }, {x, w, b});
  gradcheck([](auto& in) { return linear_gelu(in[0], in[1], Tensor()); }, {x, w});
}

TEST_CASE("grad: layer_norm", "[grad]") {
  Rng rng(9);
  for (int64_t C : {1, 33}) {
    auto x = rg({37, C}, rng, -2, 2), w = rg({C}, rng), b = rg({C}, rng);
    gradcheck([](auto& in) { return layer_norm(in[0], in[1], in[2], 1e-6); }, {x, w, b});
  }
}

TEST_CASE("grad: add_layer_norm, through the sum and the norm", "[grad]") {
  Rng rng(19);
  auto x = rg({5, 33}, rng, -2, 2), br = rg({5, 33}, rng), w = rg({33}, rng), b = rg({33}, rng);
  gradcheck(
      [](auto& in) {
        const AddNorm r = add_layer_norm(in[0], in[1], in[2], in[3], 1e-6);
        return concat({r.sum, r.normed});
      },
      {x, br, w, b});
}

TEST_CASE("grad: softmax and log_softmax", "[grad]") {
  Rng rng(10);
  auto x = rg({7, 33}, rng, -3, 3);
  gradcheck([](auto& in) { return softmax(in[0]); }, {x});
  gradcheck([](auto& in) { return log_softmax(in[0]); }, {x});
  gradcheck([](auto& in) { return softmax(in[0]); }, {rg({1, 1}, rng)});
}

TEST_CASE("grad: attention on packed qkv, several head dims and lengths", "[grad]") {
  Rng rng(11);
  struct Case {
    int64_t B, N, H, Dh;
  };
  for (Case c : {Case{2, 5, 2, 3}, Case{1, 1, 1, 4}, Case{1, 13, 3, 2}}) {
    auto qkv = rg({c.B, c.N, 3 * c.H * c.Dh}, rng, -1.5, 1.5);
    const int64_t H = c.H;
    gradcheck([H](auto& in) { return attention(in[0], H); }, {qkv});
  }
}

TEST_CASE("grad: l2_normalize", "[grad]") {
  Rng rng(12);
  gradcheck([](auto& in) { return l2_normalize(in[0]); }, {rg({6, 17}, rng)});
}

TEST_CASE("grad: weight_norm and weight_norm_linear", "[grad]") {
  Rng rng(13);
  auto v = rg({7, 5}, rng), g = rg({7, 1}, rng), x = rg({3, 5}, rng);
  gradcheck([](auto& in) { return weight_norm(in[0], in[1]); }, {v, g});
  gradcheck([](auto& in) { return weight_norm_linear(in[0], in[1], in[2]); }, {x, v, g});
}

TEST_CASE("grad: drop_path with a fixed mask", "[grad]") {
  Rng rng(14);
  auto x = rg({6, 4, 3}, rng);
  gradcheck(
      [](auto& in) {
        // The same masks on every evaluation: the same nonce, call 0.
        DropPathNoise noise = make_drop_path_noise(99, in[0].device());
        return drop_path(in[0], 0.4, true, noise);
      },
      {x});
}

TEST_CASE("grad: linear_drop_path with a fixed mask, with and without bias", "[grad]") {
  Rng rng(19);
  auto x = rg({6, 3, 7}, rng), w = rg({5, 7}, rng), b = rg({5}, rng);
  for (const double p : {0.4, 0.0}) {
    INFO("p " << p);
    // The same masks on every evaluation: the same nonce, call 0.
    gradcheck(
        [p](auto& in) {
          DropPathNoise noise = make_drop_path_noise(99, in[0].device());
          return linear_drop_path(in[0], in[1], in[2], p, noise);
        },
        {x, w, b});
    gradcheck(
        [p](auto& in) {
          DropPathNoise noise = make_drop_path_noise(99, in[0].device());
          return linear_drop_path(in[0], in[1], Tensor(), p, noise);
        },
        {x, w});
  }
}

TEST_CASE("grad: patchify with a remainder the conv ignores", "[grad]") {
  Rng rng(15);
  auto img = rg({2, 3, 9, 7}, rng), w = rg({5, 3, 3, 3}, rng), b = rg({5}, rng);
  gradcheck([](auto& in) { return patchify(in[0], in[1], in[2]); }, {img, w, b});
}

TEST_CASE("grad: bicubic resize of a grid (DINO's +0.1 scale)", "[grad]") {
  Rng rng(16);
  auto grid = rg({4, 4, 3}, rng);
  gradcheck([](auto& in) { return resize_bicubic(in[0], 2, 2, 2.1 / 4, 2.1 / 4); }, {grid});
  gradcheck([](auto& in) { return resize_bicubic(in[0], 7, 6, 7.1 / 4, 6.1 / 4); }, {grid});
}

TEST_CASE("grad: dino_loss (student side)", "[grad]") {
  Rng rng(17);
  const int64_t G = 2, V = 5, B = 3, K = 11;
  auto s = rg({V * B, K}, rng, -1, 1);
  auto t = random_f64({G * B, K}, rng), c = random_f64({K}, rng, -0.1, 0.1);
  gradcheck([&](auto& in) { return dino_loss(in[0], t, c, G, 0.1, 0.04); }, {s});
}

TEST_CASE("gelu's float path (vectorised erf/exp) matches the double path", "[grad]") {
  // The gradient checks run in double; training runs the float path of kernels/cpu/gelu.cpp,
  // which uses fast_math.h instead of the C library.
  Rng rng(18);
  Tensor x64 = Tensor::uniform({4099}, rng, -9, 9, DType::f64);
  x64.data<double>()[0] = 0.0;
  x64.data<double>()[1] = -1e-4;
  Tensor x32 = x64.to(DType::f32);
  x32.set_requires_grad();
  Tensor x64r = x32.detach().to(DType::f64);  // the same (float-rounded) inputs, in double
  x64r.set_requires_grad();
  Tensor g = Tensor::uniform({4099}, rng, -1, 1, DType::f64);
  Tensor y32 = gelu(x32), y64 = gelu(x64r);
  y32.backward(g.to(DType::f32));
  y64.backward(g);
  double worst_y = 0, worst_dx = 0;
  for (int64_t i = 0; i < x64.numel(); ++i) {
    worst_y = std::max(worst_y, std::abs(double(y32.data<float>()[i]) - y64.data<double>()[i]) /
                                    (1 + std::abs(y64.data<double>()[i])));
    worst_dx = std::max(
        worst_dx, std::abs(double(x32.grad().data<float>()[i]) - x64r.grad().data<double>()[i]));
  }
  INFO("worst forward error " << worst_y << ", worst backward error " << worst_dx);
  CHECK(worst_y < 2e-6);
  CHECK(worst_dx < 2e-6);
}
