// The whole training step on the GPU against the CPU (issue 5, "Validation"): a small ViT with
// the DINO head, forward and backward, and two full DINO steps (train/step.h dino_step:
// teacher forward, multi-crop student, loss, backward, clipping, AdamW, EMA) from identical
// state. The model is vit_micro-sized (embed 64, depth 2, 2 heads of 32; 28-pixel images with
// patch 4, so 49 + 1 tokens for the global crops and 9 + 1 for the 12-pixel local crops, which
// interpolate the position embeddings; head hidden 128, bottleneck 64, K = 512), so the CPU
// side takes well under a second.
//
// Why the tolerances are what they are. The GPU runs as PyTorch's bf16 autocast (ARCHITECTURE §3):
// every GEMM reads bf16-rounded operands (relative rounding error up to 2^-9 = 2e-3 per
// element) and most activations are stored in bf16; the residual stream, the statistics and the
// logits stay f32. Through the ~10 GEMMs of this model (forward) and twice that (backward),
// those roundings add up, mostly at random, to relative L2 errors of about 0.5-1% on the logits
// and 1-2% on the parameter gradients, against a CPU that rounds nothing beyond float32. So:
// logits 3e-2, gradients 6e-2: a few times the expected error, and far below the O(1) errors of
// a wrong index, a missing term or a transposed operand.
//
// After an AdamW step the comparison needs more care. With DINO's eps = 1e-8, Adam divides
// each element's moment by its own root mean square, so an element whose gradient is within
// the bf16 noise of zero gets a step of +-lr in a direction the noise decides (an exact case:
// the attention's key bias has a zero gradient in exact arithmetic, and much of the key
// weights' and the position embeddings' gradients cancel). Emulated on the CPU (the same two
// steps with Gaussian noise of 1% of each gradient's RMS added), that turns 1% of gradient
// noise into a 36% error of the update, with an update cosine of 0.33 for pos_embed. So this
// test runs AdamW with eps = 1, above the per-element gradient magnitudes here (clipped to
// norms <= ~1.6 below), where the update is nearly linear in the gradient (SGD with momentum,
// scaled by lr / eps) and inherits the gradient's error: emulated, 3% (5%) gradient noise gives
// a 3.2% (5.2%) update error and update cosines >= 0.999 (0.998); lr 0.3 and 0.6 make the two
// steps move the loss visibly (4.58 -> 3.04). The parameters are compared relative to the
// update they made, ||p_gpu - p_cpu|| / ||p_cpu - p_initial|| over all parameters together
// (<= 0.1, above the gradients' own tolerance), and per parameter by the cosine of the two
// updates (>= 0.95; a missing, doubled or misdirected update gives <= 0). The step-2 loss
// carries both the bf16 forward and the step-1 divergence (emulated ~0.3%): 2e-2. eps = 1e-8
// itself is exact arithmetic, checked against the CPU by tests/cuda/test_optimizer.cpp.
//
// The exact part is checked exactly: a CPU "shadow" takes the GPU's state before each step and
// the GPU's own (captured) gradients, and runs the CPU's clipping, last-layer freeze, AdamW and
// EMA (train/step.h apply_update) on them. The GPU's clipped gradients, parameters, moments
// and teacher must then match it to float rounding, and every updated parameter must hold the
// bf16 copy the fused kernels handed over (no stale copy, no cast pending).
//
// Last, the trainer on CUDA (train/trainer.cpp): a short `dino train --device cuda` run with its
// k-NN evaluation, its checkpoint resumed on the CPU, and an exact resume on the GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "core/autograd.h"
#include "core/optim.h"
#include "core/storage.h"
#include "losses/dino_loss.h"
#include "models/multicrop.h"
#include "tests/cuda/test_util.h"
#include "tests/train_fixtures.h"
#include "train/config.h"
#include "train/step.h"
#include "train/trainer.h"

using namespace dino;
using namespace dino::test;

namespace {

constexpr double kLogitsTol = 3e-2;     // f32 logits from bf16 GEMMs (see the top comment)
constexpr double kGradTol = 6e-2;       // parameter gradients through the bf16 backward
constexpr double kLossTol = 2e-2;       // the scalar loss, relative
constexpr double kCenterTol = 5e-2;     // the center after the update: 0.1 x mean teacher logits
constexpr double kUpdateTol = 0.1;      // ||p_gpu - p_cpu|| / ||p_cpu - p_initial||, all params
constexpr double kUpdateCosMin = 0.95;  // per parameter: cosine of the two devices' updates
constexpr double kAdamEps = 1.0;        // the linear regime of Adam (see the top comment)
// Against the shadow (same gradients, same arithmetic but for float-vs-double norm partials
// and the last bit of pow): relative to the step's own update, plus a few float ulps of the
// parameter.
constexpr double kShadowTol = 1e-4;
constexpr double kUlps = 4.0 / (1 << 23);

VitConfig micro_vit(double drop_path) {
  VitConfig c;
  c.img_size = 28;
  c.patch_size = 4;
  c.in_chans = 3;
  c.embed_dim = 64;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 4.0;
  c.drop_path_rate = drop_path;
  return c;
}

HeadConfig micro_head() {
  HeadConfig h;
  h.in_dim = 64;
  h.out_dim = 512;
  h.hidden_dim = 128;
  h.bottleneck_dim = 64;
  h.nlayers = 3;
  h.norm_last_layer = true;
  return h;
}

DinoLossConfig micro_loss() {
  DinoLossConfig c;
  c.out_dim = 512;
  c.global_crops = 2;
  c.student_temp = 0.1;
  c.center_momentum = 0.9;
  return c;
}

// 2 global 28-pixel and 2 local 12-pixel crops of B images, values as normalised images.
std::vector<Tensor> make_crops(Rng& rng, int64_t B) {
  std::vector<Tensor> crops;
  for (int v = 0; v < 4; ++v) {
    const int64_t S = v < 2 ? 28 : 12;
    crops.push_back(Tensor::randn({B, 3, S, S}, rng));
  }
  return crops;
}

std::vector<Tensor> to_device(const std::vector<Tensor>& xs, Device d) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) out.push_back(x.to(d));
  return out;
}

std::vector<double> host(const Tensor& t) {
  const std::vector<float> f = t.to_vector();
  return std::vector<double>(f.begin(), f.end());
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

double l2_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

using Snapshot = std::vector<std::pair<std::string, std::vector<double>>>;

Snapshot snapshot(const Module& m) {
  Snapshot s;
  for (auto& [name, p] : m.named_parameters()) s.push_back({name, host(p)});
  return s;
}

// A training state: student, EMA teacher, loss (center) and AdamW, built on the CPU from one
// seed (as the trainer does) and then moved.
struct Run {
  std::unique_ptr<DinoModel> student, teacher;
  std::unique_ptr<DinoLoss> loss;
  std::unique_ptr<AdamW> opt;
};

Run make_run(Device device) {
  Run r;
  Rng init(21);
  r.student = std::make_unique<DinoModel>(micro_vit(0.1), micro_head(), init);
  r.teacher = build_teacher(*r.student);
  r.loss = std::make_unique<DinoLoss>(micro_loss(), 1);
  if (device == Device::cuda) {
    r.student->to(device);
    r.teacher->to(device);
    r.loss->to(device);
  }
  AdamW groups = make_optimizer(*r.student);  // DINO's two groups, with this test's eps
  r.opt = std::make_unique<AdamW>(groups.groups(), 0.9, 0.999, kAdamEps);
  return r;
}

void copy_params(Module& dst, const Module& src) {
  auto d = dst.named_parameters(), s = src.named_parameters();
  REQUIRE(d.size() == s.size());
  for (size_t i = 0; i < d.size(); ++i) d[i].second.copy_from(s[i].second);
}

void copy_optimizer(AdamW& dst, AdamW& src) {
  for (auto& [name, st] : dst.state()) {
    const AdamWState& from = src.state().at(name);
    st.exp_avg.copy_from(from.exp_avg);
    st.exp_avg_sq.copy_from(from.exp_avg_sq);
    st.step = from.step;
  }
}

// The GPU parameter's cached bf16 copy is current (handed over by the fused kernel, so no cast
// is pending) and equals bf16 of its master weights, bit for bit.
// Returns "" when it is, else what is wrong.
std::string bf16_copy_problem(const Tensor& p) {
  const TensorImpl& im = *p.impl();
  if (!im.bf16_copy.defined()) return "no bf16 copy";
  if (im.bf16_copy_version != im.storage->version) return "stale bf16 copy (a cast is pending)";
  const std::vector<float> w = p.to_vector();
  std::vector<uint16_t> bits(static_cast<size_t>(p.numel()));
  copy_bytes(bits.data(), Device::cpu, im.bf16_copy.raw_data(), im.bf16_copy.device(),
             bits.size() * sizeof(uint16_t));
  for (size_t i = 0; i < w.size(); ++i)
    if (bits[i] != bf16(w[i]).bits)
      return str_cat("element ", i, ": bf16 copy bits ", bits[i], ", bf16(weight) bits ",
                     bf16(w[i]).bits);
  return "";
}

// The per-parameter clip threshold that splits this model's first-step gradient norms in two,
// so the step clips some parameters and leaves others (from a throwaway CPU run).
double middle_clip_norm(const std::vector<Tensor>& crops) {
  Run r = make_run(Device::cpu);
  StepSettings s;
  s.clip_grad = 0;
  DropPathNoise drop = make_drop_path_noise(5, Device::cpu);
  StepOutputs out = dino_step(*r.student, *r.teacher, *r.loss, *r.opt, crops, s, &drop, true);
  std::vector<double> norms;
  for (auto& [name, g] : out.grads) norms.push_back(norm(host(g)));
  std::sort(norms.begin(), norms.end());
  REQUIRE(norms.size() >= 2);
  const size_t m = norms.size() / 2;
  return std::sqrt(norms[m - 1] * norms[m]);  // strictly between two norms
}

}  // namespace

TEST_CASE("small ViT + DINO head: forward and every parameter gradient on the GPU match the CPU",
          "[train]") {
  const VitConfig vc = micro_vit(0.1);  // drop path on: the same nonce on both devices
  const HeadConfig hc = micro_head();
  Rng init_cpu(7), init_gpu(7);
  DinoModel cpu(vc, hc, init_cpu), gpu(vc, hc, init_gpu);
  gpu.to(Device::cuda);
  Rng data(11);
  const int64_t B = 4;
  const std::vector<Tensor> crops = make_crops(data, B);
  const int64_t rows = 4 * B;
  const Tensor upstream = Tensor::randn({rows, hc.out_dim}, data);

  cu::set_poison_allocations(true);
  DropPathNoise drop_gpu = make_drop_path_noise(3, Device::cuda);
  const Tensor out_gpu = gpu.forward(to_device(crops, Device::cuda), &drop_gpu);
  REQUIRE(out_gpu.device() == Device::cuda);
  REQUIRE(out_gpu.shape() == Shape{rows, hc.out_dim});
  CHECK(out_gpu.dtype() == DType::f32);  // the head's last layer writes f32 logits
  out_gpu.backward(upstream.to(Device::cuda));
  cu::synchronize();
  cu::set_poison_allocations(false);

  DropPathNoise drop_cpu = make_drop_path_noise(3, Device::cpu);
  const Tensor out_cpu = cpu.forward(crops, &drop_cpu);
  out_cpu.backward(upstream);

  expect_close("logits", host(out_gpu), host(out_cpu), kLogitsTol);
  const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  REQUIRE(pc.size() == pg.size());
  std::printf("[train] forward/backward, GPU vs CPU: logits rel L2 %.3g (tolerance %.3g)\n",
              compare(host(out_gpu), host(out_cpu)).rel_l2, kLogitsTol);
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::string& name = pc[i].first;
    INFO("parameter " << name);
    REQUIRE(pg[i].first == name);
    const Tensor& gc = pc[i].second.grad();
    const Tensor& gg = pg[i].second.grad();
    REQUIRE(gc.defined() == gg.defined());  // weight_g (norm_last_layer) has none on either
    if (!gc.defined()) continue;
    CHECK(gg.device() == Device::cuda);
    CHECK(gg.dtype() == DType::f32);  // an f32 parameter's gradient is f32
    const Comparison c = compare(host(gg), host(gc));
    std::printf("  grad %-36s rel L2 %.3g\n", name.c_str(), c.rel_l2);
    if (!(c.rel_l2 <= worst)) worst = c.rel_l2, worst_name = name;
    INFO("rel L2 " << c.rel_l2 << " (tolerance " << kGradTol << "); worst element " << c.worst);
    CHECK(c.non_finite == 0);
    CHECK(c.rel_l2 <= kGradTol);
  }
  std::printf("[train] worst gradient: %s, rel L2 %.3g (tolerance %.3g)\n", worst_name.c_str(),
              worst, kGradTol);
}

TEST_CASE("two full DINO training steps on the GPU match the CPU from identical state", "[train]") {
  Rng data(13);
  const int64_t B = 4;
  std::vector<std::vector<Tensor>> crops{make_crops(data, B), make_crops(data, B)};
  const double clip = middle_clip_norm(crops[0]);

  Run cpu = make_run(Device::cpu), gpu = make_run(Device::cuda), shadow = make_run(Device::cpu);
  const Snapshot init_student = snapshot(*cpu.student), init_teacher = snapshot(*cpu.teacher);
  DropPathNoise drop_cpu = make_drop_path_noise(0, Device::cpu);
  DropPathNoise drop_gpu = make_drop_path_noise(0, Device::cuda);

  StepSettings settings[2];
  settings[0].lr = 0.3, settings[0].weight_decay = 0.04, settings[0].teacher_temp = 0.04;
  settings[0].teacher_momentum = 0.99, settings[0].clip_grad = clip;
  settings[0].freeze_last_layer = true;  // AdamW skips head.last_layer: no step, no moments
  settings[1].lr = 0.6, settings[1].weight_decay = 0.1, settings[1].teacher_temp = 0.05;
  settings[1].teacher_momentum = 0.995, settings[1].clip_grad = clip;
  settings[1].freeze_last_layer = false;  // the last layer's first update (its step 1)
  settings[0].drop_path_nonce = 5, settings[1].drop_path_nonce = 6;

  for (int step = 0; step < 2; ++step) {
    INFO("step " << step + 1);
    const StepSettings& s = settings[step];
    // The shadow starts from the GPU's state.
    copy_params(*shadow.student, *gpu.student);
    copy_params(*shadow.teacher, *gpu.teacher);
    copy_optimizer(*shadow.opt, *gpu.opt);
    const Snapshot before_student = snapshot(*gpu.student), before_teacher = snapshot(*gpu.teacher);

    cu::set_poison_allocations(true);
    const StepOutputs og = dino_step(*gpu.student, *gpu.teacher, *gpu.loss, *gpu.opt,
                                     to_device(crops[step], Device::cuda), s, &drop_gpu, true);
    cu::synchronize();
    cu::set_poison_allocations(false);
    const StepOutputs oc =
        dino_step(*cpu.student, *cpu.teacher, *cpu.loss, *cpu.opt, crops[step], s, &drop_cpu);

    // ---- the shadow: the CPU's update on the GPU's gradients -------------------------------
    for (auto& [name, p] : shadow.student->named_parameters()) p.zero_grad();
    {
      auto ps = shadow.student->named_parameters();
      for (const auto& [name, g] : og.grads) {
        auto it =
            std::find_if(ps.begin(), ps.end(), [&](const auto& kv) { return kv.first == name; });
        REQUIRE(it != ps.end());
        it->second.set_grad(g.to(Device::cpu));
      }
    }
    apply_update(*shadow.student, *shadow.teacher, *shadow.opt, s);

    const auto sg = gpu.student->named_parameters(), ss = shadow.student->named_parameters();
    for (size_t i = 0; i < sg.size(); ++i) {
      const std::string& name = sg[i].first;
      INFO("student " << name << " against the shadow");
      const Tensor& pg = sg[i].second;
      const Tensor& ps = ss[i].second;
      // Clipping and the freeze: the gradients AdamW read.
      REQUIRE(pg.grad().defined() == ps.grad().defined());
      if (pg.grad().defined()) {
        const Comparison c = compare(host(pg.grad()), host(ps.grad()));
        INFO("clipped gradient rel L2 " << c.rel_l2 << "; worst " << c.worst);
        CHECK(c.rel_l2 <= 1e-6);
        const std::string problem = bf16_copy_problem(pg);
        INFO("bf16 copy: " << problem);
        CHECK(problem.empty());
      }
      const std::vector<double> got = host(pg), want = host(ps);
      const double update = l2_distance(want, before_student[i].second);
      INFO("distance " << l2_distance(got, want) << ", update " << update << ", |p| "
                       << norm(want));
      CHECK(l2_distance(got, want) <= kShadowTol * update + kUlps * norm(want));
    }
    for (auto& [name, st] : gpu.opt->state()) {
      INFO("optimizer state of " << name);
      const AdamWState& sh = shadow.opt->state().at(name);
      CHECK(st.step == sh.step);
      // The last layer was frozen in step 1: it has had one step fewer.
      CHECK(st.step == (name.rfind("head.last_layer.", 0) == 0 ? step : step + 1));
      const std::vector<double> m = host(sh.exp_avg), v = host(sh.exp_avg_sq);
      CHECK(l2_distance(host(st.exp_avg), m) <= 1e-5 * norm(m) + 1e-30);
      CHECK(l2_distance(host(st.exp_avg_sq), v) <= 1e-5 * norm(v) + 1e-30);
    }
    const auto tg = gpu.teacher->named_parameters(), ts = shadow.teacher->named_parameters();
    for (size_t i = 0; i < tg.size(); ++i) {
      INFO("teacher " << tg[i].first << " against the shadow");
      const std::vector<double> got = host(tg[i].second), want = host(ts[i].second);
      const double update = l2_distance(want, before_teacher[i].second);
      INFO("distance " << l2_distance(got, want) << ", update " << update << ", |p| "
                       << norm(want));
      CHECK(l2_distance(got, want) <= 1e-3 * update + kUlps * norm(want));
      const std::string problem = bf16_copy_problem(tg[i].second);  // the EMA wrote them all
      INFO("bf16 copy: " << problem);
      CHECK(problem.empty());
    }

    // ---- GPU against CPU ---------------------------------------------------------------------
    CHECK(std::isfinite(og.stats.loss));
    const double loss_err = std::fabs(og.stats.loss - oc.stats.loss) / std::fabs(oc.stats.loss);
    const Comparison center = compare(host(gpu.loss->center), host(cpu.loss->center));
    INFO("loss GPU " << og.stats.loss << ", CPU " << oc.stats.loss);
    CHECK(loss_err <= kLossTol);
    INFO("center rel L2 " << center.rel_l2 << "; worst " << center.worst);
    CHECK(center.non_finite == 0);
    CHECK(center.rel_l2 <= kCenterTol);

    auto against_cpu = [&](const char* which, const Module& g, const Module& c,
                           const Snapshot& init) {
      const auto pg = g.named_parameters(), pc = c.named_parameters();
      double diff2 = 0, update2 = 0, worst_cos = 1;
      std::string worst_name = "-";
      for (size_t i = 0; i < pg.size(); ++i) {
        const std::string& name = pg[i].first;
        INFO(which << " " << name << " against the CPU");
        const std::vector<double> a = host(pg[i].second), b = host(pc[i].second);
        const std::vector<double> da = minus(a, init[i].second), db = minus(b, init[i].second);
        const double nb = norm(db), na = norm(da);
        if (nb <= kUlps * norm(b)) {  // not moved on the CPU (frozen; weight_g): nor on the GPU
          CHECK(l2_distance(a, b) <= kUlps * norm(b) + 1e-30);
          continue;
        }
        diff2 += l2_distance(a, b) * l2_distance(a, b);
        update2 += nb * nb;
        double dot = 0;
        for (size_t k = 0; k < da.size(); ++k) dot += da[k] * db[k];
        const double cos = na > 0 ? dot / (na * nb) : 0.0;
        if (cos < worst_cos) worst_cos = cos, worst_name = name;
        INFO("update cosine " << cos << ", |update| GPU " << na << ", CPU " << nb);
        CHECK(cos >= kUpdateCosMin);
      }
      const double rel = std::sqrt(diff2 / update2);
      std::printf(
          "[train] step %d %s: ||p_gpu - p_cpu|| / ||update|| %.3g (tolerance %.3g), "
          "lowest update cosine %.3f (%s)\n",
          step + 1, which, rel, kUpdateTol, worst_cos, worst_name.c_str());
      INFO(which << ": ||p_gpu - p_cpu|| / ||p_cpu - p_initial|| = " << rel);
      CHECK(rel <= kUpdateTol);
    };
    std::printf("[train] step %d: loss GPU %.6f CPU %.6f (rel %.3g), center rel L2 %.3g\n",
                step + 1, og.stats.loss, oc.stats.loss, loss_err, center.rel_l2);
    against_cpu("student", *gpu.student, *cpu.student, init_student);
    against_cpu("teacher", *gpu.teacher, *cpu.teacher, init_teacher);
  }
}

namespace {

std::string fresh_dir(const std::string& name) { return test::fresh_dir("dino_cuda_tests", name); }

}  // namespace

TEST_CASE("dino train on CUDA: a short run with its k-NN, and a checkpoint the CPU resumes",
          "[train]") {
  TrainOptions opt;
  opt.out_dir = fresh_dir("train_cuda");
  opt.quiet = true;
  opt.device = "cuda";
  const TrainResult r = train(small_recipe(12), opt);
  INFO(r.to_json().dump(2));
  CHECK(r.device == "cuda");
  CHECK(r.steps == 12);
  CHECK(std::isfinite(r.first_loss));
  CHECK(std::isfinite(r.last_loss));
  CHECK(r.teacher_entropy > 0);
  REQUIRE(!r.knn.empty());  // teacher features extracted on the GPU, ranked on the CPU
  for (const char* row : {"trained", "random_init"}) {
    INFO(row);
    CHECK(r.knn[row]["top1"].get<double>() > 25.0);  // above chance for 4 classes
  }
  // The checkpoint holds CPU copies of everything (optimizer state included): the CPU resumes.
  TrainOptions cpu = opt;
  cpu.device = "cpu";
  cpu.resume = true;
  auto more = small_recipe(14);
  more["run"]["knn"] = false;
  const TrainResult rc = train(more, cpu);
  CHECK(rc.steps == 14);
  CHECK(std::isfinite(rc.last_loss));
}

// ARCHITECTURE §6: reductions in a fixed order and the random state in the checkpoint, so a resumed
// run is bit-identical to an uninterrupted one; on the GPU this needs every kernel of the step
// to be deterministic (no float atomics), which is what this test shows.
TEST_CASE("dino train on CUDA: a resumed run is bit-identical to an uninterrupted one", "[train]") {
  const std::vector<std::string> differ =
      resume_differences("cuda", fresh_dir("resume_cuda_a"), fresh_dir("resume_cuda_b"));
  INFO(differ.size() << " differ; first: " << (differ.empty() ? "" : differ[0]));
  CHECK(differ.empty());
}
