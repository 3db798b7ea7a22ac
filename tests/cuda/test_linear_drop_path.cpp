// linear_drop_path on CUDA, on what the op check (tests/cuda/test_op_table.cpp) cannot see.
// The fused drop path backward + bias gradient (kernels/cuda/linear_drop_path.cu), launched
// alone on every linear_drop_path case's sizes (testing/op_cases_linear.cpp: odd O for the
// element path, O = 384 for the 16-byte path, p = 0.1 and 0.5), outputs poisoned with NaN:
// dy has the bits of the unfused drop path backward, for a data-parallel rank's samples too;
// the bias gradient has the bits of the unfused Linear backward's column sums of that dy (the
// same order of additions) and matches a double reference; a second launch gives the same bits.
// And the whole op against drop_path(linear(...)) over several calls of a step: the same bits
// in the output and every gradient.
#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "core/drop_path_mask.h"
#include "core/ops.h"
#include "testing/op_cases.h"
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

namespace {

template <class T>
std::vector<T> bits_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu);
  std::vector<T> b(size_t(h.numel()));
  std::memcpy(b.data(), h.raw_data(), b.size() * sizeof(T));
  return b;
}

Tensor random_on_cuda(Rng& rng, const Shape& shape, double scale = 1.0) {
  return Tensor::from_vector(random_floats(rng, size_t(shape_numel(shape)), scale), shape)
      .to(DType::bf16)
      .to(Device::cuda);
}

}  // namespace

TEST_CASE("drop_path_bias_backward: unfused dy and db bits, column sums, deterministic",
          "[linear_drop_path]") {
  const Backend& be = backend(Device::cuda);
  Rng rng(1637);
  const auto cases = dino::testing::cases_of("linear_drop_path");
  REQUIRE(cases.size() >= 8);
  for (const dino::testing::OpCase* c : cases) {
    const int64_t B = c->dims[0], T = c->dims[1], I = c->dims[2], O = c->dims[3];
    const double p = double(c->dims[4]) / 100;
    const Tensor nonce = make_drop_path_noise(1234, Device::cuda).nonce;
    // The case's masks (nonce 1234, call 0, rank 0 of 1) drop some samples and keep others.
    int dropped = 0;
    for (int64_t b = 0; b < B; ++b)
      dropped += !drop_path_keep(1234, 0, uint64_t(b), drop_path_threshold(p));
    CHECK(dropped > 0);
    CHECK(dropped < B);
    for (const auto& [offset, stride] : {std::pair<int64_t, int64_t>{0, 1}, {2, 3}}) {
      INFO(c->name << ": B = " << B << ", rows per sample " << T << ", O = " << O
                   << ", sample offset " << offset << ", stride " << stride);
      const Tensor dout = random_on_cuda(rng, {B, T, O});
      const Tensor x = random_on_cuda(rng, {B * T, I}), w = random_on_cuda(rng, {O, I}, 0.05);
      cu::set_poison_allocations(true);
      const Tensor dy = Tensor::empty({B, T, O}, DType::bf16, Device::cuda);
      const Tensor db = Tensor::empty({O}, DType::f32, Device::cuda);
      const Tensor dy2 = Tensor::empty({B, T, O}, DType::bf16, Device::cuda);
      const Tensor db2 = Tensor::empty({O}, DType::f32, Device::cuda);
      const Tensor dy_only = Tensor::empty({B, T, O}, DType::bf16, Device::cuda);
      const Tensor unfused = Tensor::empty({B, T, O}, DType::bf16, Device::cuda);
      const Tensor unfused_db = Tensor::empty({O}, DType::f32, Device::cuda);
      cu::set_poison_allocations(false);
      be.drop_path_bias_backward(dy, db, dout, nonce, 0, offset, stride, p);
      be.drop_path_bias_backward(dy2, db2, dout, nonce, 0, offset, stride, p);
      be.drop_path_bias_backward(dy_only, Tensor(), dout, nonce, 0, offset, stride, p);
      be.drop_path(unfused, dout, nonce, 0, offset, stride, p);
      be.linear_backward(Tensor(), Tensor(), unfused_db, unfused.reshape({B * T, O}), x, w);

      const std::vector<uint16_t> d = bits_of<uint16_t>(dy);
      CHECK(d == bits_of<uint16_t>(unfused));
      CHECK(d == bits_of<uint16_t>(dy2));
      CHECK(d == bits_of<uint16_t>(dy_only));
      const std::vector<uint32_t> s = bits_of<uint32_t>(db);
      CHECK(s == bits_of<uint32_t>(db2));
      CHECK(s == bits_of<uint32_t>(unfused_db));

      const std::vector<float> dh = dy.to_vector(), gh = dout.to_vector();
      std::vector<double> ref(size_t(O), 0.0);
      int64_t zero_rows = 0;
      for (int64_t r = 0; r < B * T; ++r) {
        bool zero = true;
        for (int64_t k = 0; k < O; ++k) {
          const float v = dh[size_t(r * O + k)];
          REQUIRE(std::isfinite(v));
          zero = zero && v == 0.f && gh[size_t(r * O + k)] != 0.f;
          ref[size_t(k)] += double(v);
        }
        zero_rows += zero;
      }
      CHECK(zero_rows % T == 0);  // whole samples are dropped
      expect_close("db", host_doubles(db), ref, 1e-5);
    }
  }
}

TEST_CASE("linear_drop_path on CUDA: the bits of drop_path(linear(...)), values and gradients",
          "[linear_drop_path]") {
  // The fused node runs linear's and drop_path's forward kernels with the same call index and
  // the same products after its backward pass, so nothing changes but the launches: proj then
  // fc2 of two blocks (calls 0 .. 3), p rising as over depth, with and without a bias.
  Rng rng(1641);
  const int64_t B = 9, T = 5, I = 33, O = 65;
  const Tensor x0 = random_on_cuda(rng, {B, T, I}), w0 = random_on_cuda(rng, {O, I}, 0.05),
               b0 = random_on_cuda(rng, {O}, 0.5).to(DType::f32),
               up = random_on_cuda(rng, {B, T, O});
  for (const bool with_bias : {true, false}) {
    INFO("bias " << with_bias);
    auto run = [&](bool fused) {
      Tensor x = x0.clone(), w = w0.to(DType::f32), b = with_bias ? b0.clone() : Tensor();
      for (Tensor* t : {&x, &w, &b})
        if (t->defined()) t->set_requires_grad();
      DropPathNoise noise = make_drop_path_noise(4321, Device::cuda);
      std::vector<Tensor> outs;
      Tensor loss;
      for (const double p : {0.1, 0.1, 0.5, 0.5}) {
        const Tensor y = fused ? linear_drop_path(x, w, b, p, noise)
                               : drop_path(linear(x, w, b), p, true, noise);
        outs.push_back(y.detach());
        const Tensor l = sum(mul(y, up));
        loss = loss.defined() ? add(loss, l) : l;
      }
      CHECK(noise.next_call == 4);
      loss.backward();
      std::vector<std::vector<uint16_t>> r;
      for (const Tensor& y : outs) r.push_back(bits_of<uint16_t>(y));
      r.push_back(bits_of<uint16_t>(x.grad()));
      std::vector<std::vector<uint32_t>> f{bits_of<uint32_t>(w.grad())};
      if (with_bias) f.push_back(bits_of<uint32_t>(b.grad()));
      return std::make_pair(r, f);
    };
    const auto fused = run(true), unfused = run(false);
    CHECK(fused.first == unfused.first);
    CHECK(fused.second == unfused.second);
  }
}
