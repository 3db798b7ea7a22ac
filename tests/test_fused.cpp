// Each fused op equals its composite form (values and gradients), in float64 on the CPU.
#include <algorithm>

#include "core/batch_shard.h"
#include "testing/composite.h"
#include "tests/gradcheck.h"

using namespace dino;
using namespace dino::testing;

namespace {

// Runs both forms on copies of the same inputs; compares outputs and every input gradient.
void expect_same(const OpFn& fused, const OpFn& comp, const std::vector<Tensor>& inputs,
                 double tol = 1e-12) {
  auto run = [&](const OpFn& f) {
    std::vector<Tensor> in;
    for (const Tensor& t : inputs) {
      Tensor c = t.clone();
      c.set_requires_grad(t.requires_grad());
      in.push_back(c);
    }
    Rng rng(77);
    Tensor out = f(in);
    Tensor w = random_f64(out.shape(), rng);
    sum(mul(out, w)).backward();
    std::vector<Tensor> res{out};
    for (const Tensor& t : in)
      if (t.requires_grad()) res.push_back(t.grad());
    return res;
  };
  auto a = run(fused), b = run(comp);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << i << " (0 = output, then input gradients)");
    CHECK(rel_error(a[i], b[i]) < tol);
  }
}

}  // namespace

TEST_CASE("fused layer_norm equals its composite", "[fused]") {
  Rng rng(1);
  for (int64_t C : {33, 384}) {
    Tensor x = random_f64({37, C}, rng, -3, 3), w = random_f64({C}, rng), b = random_f64({C}, rng);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad();
    expect_same([](auto& in) { return layer_norm(in[0], in[1], in[2], 1e-6); },
                [](auto& in) { return composite::layer_norm(in[0], in[1], in[2], 1e-6); },
                {x, w, b});
  }
}

TEST_CASE("fused add_layer_norm equals its composite, both outputs", "[fused]") {
  Rng rng(11);
  for (int64_t C : {1, 33, 384}) {
    Tensor x = random_f64({2, 19, C}, rng, -3, 3), br = random_f64({2, 19, C}, rng),
           w = random_f64({C}, rng), b = random_f64({C}, rng);
    for (Tensor* t : {&x, &br, &w, &b}) t->set_requires_grad();
    // Both outputs in one result, so the stream's gradient comes from the norm and from the
    // sum's other use together, as it does in a ViT.
    expect_same(
        [](auto& in) {
          const AddNorm r = add_layer_norm(in[0], in[1], in[2], in[3], 1e-6);
          return concat({r.sum, r.normed});
        },
        [](auto& in) {
          const AddNorm r = composite::add_layer_norm(in[0], in[1], in[2], in[3], 1e-6);
          return concat({r.sum, r.normed});
        },
        {x, br, w, b});
  }
}

TEST_CASE("add_layer_norm in f32 gives the bits of add then layer_norm", "[fused]") {
  Rng rng(12);
  const Tensor x = random_f64({37, 65}, rng, -3, 3).to(DType::f32),
               br = random_f64({37, 65}, rng).to(DType::f32),
               w = random_f64({65}, rng).to(DType::f32), b = random_f64({65}, rng).to(DType::f32);
  const AddNorm fused = add_layer_norm(x, br, w, b, 1e-6);
  const Tensor sum = add(x, br);
  CHECK(fused.sum.to_vector() == sum.to_vector());
  CHECK(fused.normed.to_vector() == layer_norm(sum, w, b, 1e-6).to_vector());
}

TEST_CASE("linear_gelu in f32 gives the bits of linear then gelu, values and gradients",
          "[fused]") {
  // The CPU reference of the fused node runs the same kernels as the two ops, so a CPU training
  // run is unchanged bit for bit; 197 rows x 65 columns spans several column blocks.
  Rng rng(13);
  for (const bool with_bias : {true, false}) {
    INFO("bias " << with_bias);
    const Tensor x0 = random_f64({197, 33}, rng, -3, 3).to(DType::f32),
                 w0 = random_f64({65, 33}, rng).to(DType::f32),
                 b0 = random_f64({65}, rng).to(DType::f32),
                 up = random_f64({197, 65}, rng).to(DType::f32);
    auto run = [&](bool fused) {
      Tensor x = x0.clone(), w = w0.clone(), b = with_bias ? b0.clone() : Tensor();
      for (Tensor* t : {&x, &w, &b})
        if (t->defined()) t->set_requires_grad();
      Tensor y = fused ? linear_gelu(x, w, b) : gelu(linear(x, w, b));
      sum(mul(y, up)).backward();
      std::vector<std::vector<float>> r{y.to_vector(), x.grad().to_vector(), w.grad().to_vector()};
      if (with_bias) r.push_back(b.grad().to_vector());
      return r;
    };
    CHECK(run(true) == run(false));
  }
}

TEST_CASE("linear_drop_path in f32 gives the bits of linear then drop_path, values and gradients",
          "[fused]") {
  // The CPU reference of the fused node runs the same kernels as the two ops, so a CPU training
  // run is unchanged bit for bit. Several calls of one step (call indices 0, 1, 2, as a step's
  // blocks take them), whole samples dropped at p = 0.5, and a data-parallel rank (the masks
  // are keyed by the sample's place in the global batch); 65 columns span several column blocks.
  Rng rng(14);
  const Tensor x0 = random_f64({9, 5, 33}, rng, -3, 3).to(DType::f32),
               w0 = random_f64({65, 33}, rng).to(DType::f32),
               b0 = random_f64({65}, rng).to(DType::f32),
               up = random_f64({9, 5, 65}, rng).to(DType::f32);
  for (const bool with_bias : {true, false})
    for (const int rank : {0, 1}) {
      INFO("bias " << with_bias << ", rank " << rank << " of 3");
      BatchShardScope shard(rank, 3);
      auto run = [&](bool fused) {
        Tensor x = x0.clone(), w = w0.clone(), b = with_bias ? b0.clone() : Tensor();
        for (Tensor* t : {&x, &w, &b})
          if (t->defined()) t->set_requires_grad();
        DropPathNoise noise = make_drop_path_noise(77, Device::cpu);
        Tensor loss;
        for (const double p : {0.5, 0.1, 0.5}) {
          Tensor y = fused ? linear_drop_path(x, w, b, p, noise)
                           : drop_path(linear(x, w, b), p, true, noise);
          const Tensor l = sum(mul(y, up));
          loss = loss.defined() ? add(loss, l) : l;
        }
        CHECK(noise.next_call == 3);
        loss.backward();
        std::vector<std::vector<float>> r{loss.to_vector(), x.grad().to_vector(),
                                          w.grad().to_vector()};
        if (with_bias) r.push_back(b.grad().to_vector());
        return r;
      };
      CHECK(run(true) == run(false));
    }
  // The masks are not trivial: at p = 0.5 some of the 9 samples are dropped, others kept.
  DropPathNoise noise = make_drop_path_noise(77, Device::cpu);
  const std::vector<float> y = linear_drop_path(Tensor::full({9, 1, 1}, 1.0),
                                                Tensor::full({1, 1}, 1.0), Tensor(), 0.5, noise)
                                   .to_vector();
  CHECK(std::count(y.begin(), y.end(), 0.f) > 0);
  CHECK(std::count(y.begin(), y.end(), 2.f) > 0);
}

TEST_CASE("fused softmax and log_softmax equal their composites", "[fused]") {
  Rng rng(2);
  Tensor x = random_f64({19, 65}, rng, -20, 20);
  x.set_requires_grad();
  expect_same([](auto& in) { return softmax(in[0]); },
              [](auto& in) { return composite::softmax(in[0]); }, {x});
  expect_same([](auto& in) { return log_softmax(in[0]); },
              [](auto& in) { return composite::log_softmax(in[0]); }, {x});
}

TEST_CASE("fused attention equals its composite", "[fused]") {
  Rng rng(3);
  struct Case {
    int64_t B, N, H, Dh;
  };
  for (Case c : {Case{2, 197, 3, 8}, Case{3, 37, 2, 16}, Case{1, 1, 1, 32}, Case{2, 50, 4, 5}}) {
    Tensor qkv = random_f64({c.B, c.N, 3 * c.H * c.Dh}, rng, -2, 2);
    qkv.set_requires_grad();
    const int64_t H = c.H;
    expect_same([H](auto& in) { return attention(in[0], H); },
                [H](auto& in) { return composite::attention(in[0], H); }, {qkv}, 1e-11);
  }
}

TEST_CASE("attention exposes its probabilities", "[fused]") {
  Rng rng(4);
  Tensor qkv = random_f64({2, 9, 3 * 2 * 4}, rng);
  Tensor probs;
  attention(qkv, 2, &probs);
  REQUIRE(probs.shape() == Shape{2, 2, 9, 9});
  for (int64_t r = 0; r < 2 * 2 * 9; ++r) {
    double s = 0;
    for (int64_t c = 0; c < 9; ++c) s += probs.data<double>()[r * 9 + c];
    CHECK(s == Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE("fused dino_loss equals its composite for several crop counts", "[fused]") {
  Rng rng(5);
  struct Case {
    int64_t G, V, B, K;
  };
  for (Case c : {Case{2, 10, 3, 257}, Case{2, 2, 1, 64}, Case{1, 3, 4, 33}, Case{3, 5, 2, 16}}) {
    Tensor s = random_f64({c.V * c.B, c.K}, rng, -1, 1);
    s.set_requires_grad();
    Tensor t = random_f64({c.G * c.B, c.K}, rng), ctr = random_f64({c.K}, rng, -0.2, 0.2);
    const int64_t G = c.G;
    expect_same([&](auto& in) { return dino_loss(in[0], t, ctr, G, 0.1, 0.04); },
                [&](auto& in) { return composite::dino_loss(in[0], t, ctr, G, 0.1, 0.04); }, {s},
                1e-11);
  }
}
