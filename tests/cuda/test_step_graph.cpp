// The step through a CUDA graph (train/step_graph.h) against dino_step run eagerly, from the
// same state: the same kernels on the same data, so every loss statistic, parameter, moment,
// center value and teacher weight must agree bit for bit, over steps whose learning rate,
// teacher temperature, stochastic-depth nonce and last-layer freeze all change, and across a
// change of crop shapes (a new recording). Then what a capture refuses, and the arena's rules.
#include <cstring>
#include <fstream>

#include "core/backend.h"
#include "core/ops.h"
#include "kernels/cuda/runtime.h"
#include "tests/cuda/test_util.h"
#include "tests/train_fixtures.h"
#include "train/config.h"
#include "train/step_graph.h"
#include "train/train_state.h"
#include "train/trainer.h"

using namespace dino;
using namespace dino::test;
namespace cu = dino::kernels::cuda;

namespace {

// The named tensors whose bytes differ between two lists.
std::vector<std::string> differing(const std::vector<std::pair<std::string, Tensor>>& a,
                                   const std::vector<std::pair<std::string, Tensor>>& b) {
  std::vector<std::string> out;
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor x = a[i].second.to(Device::cpu), y = b[i].second.to(Device::cpu);
    if (a[i].first != b[i].first || x.nbytes() != y.nbytes() ||
        std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) != 0)
      out.push_back(a[i].first);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> state_of(TrainState& t) {
  auto all = t.student->named_parameters("student.");
  for (auto& p : t.teacher->named_parameters("teacher.")) all.push_back(p);
  all.push_back({"center", t.loss->center});
  for (auto& [name, st] : t.optimizer->state()) {
    all.push_back({name + ".exp_avg", st.exp_avg});
    all.push_back({name + ".exp_avg_sq", st.exp_avg_sq});
  }
  return all;
}

std::vector<Tensor> crops_of(Rng& rng, int64_t B, int64_t local_size) {
  std::vector<Tensor> crops;
  for (int v = 0; v < 4; ++v)
    crops.push_back(Tensor::randn({B, 3, v < 2 ? 16 : local_size, v < 2 ? 16 : local_size}, rng)
                        .to(Device::cuda));
  return crops;
}

}  // namespace

TEST_CASE("a step through a CUDA graph is dino_step's, bit for bit, across shape changes",
          "[train][graph]") {
  auto json = small_recipe();
  json["loss"]["koleo_weight"] = 0.1;  // the KoLeo term and its statistic are recorded too
  const Recipe recipe = parse_recipe(json);
  TrainState eager(recipe, 3, 16, Device::cuda), graphed(recipe, 3, 16, Device::cuda);
  StepGraph graph;
  Rng data(21);
  cu::set_poison_allocations(true);
  for (int step = 0; step < 7; ++step) {
    INFO("step " << step);
    // Steps 0-3 at one shape (eager, record, replay, replay), 4-6 at another batch and local
    // size (eager, record, replay).
    const std::vector<Tensor> crops = step < 4 ? crops_of(data, 6, 8) : crops_of(data, 5, 12);
    StepSettings s;
    s.lr = 1e-3 * (1 + step);
    s.weight_decay = 0.04 + 0.01 * step;
    s.teacher_temp = 0.02 + 0.005 * step;
    s.teacher_momentum = 0.99 + 0.001 * step;
    s.clip_grad = 0.5;
    s.freeze_last_layer = step == 1 || step == 2;  // recorded while frozen, replayed after
    s.koleo_weight = 0.1;
    s.defer_stats = true;
    s.drop_path_nonce = drop_path_step_nonce(7, step);
    const StepOutputs e = dino_step(*eager.student, *eager.teacher, *eager.loss, *eager.optimizer,
                                    crops, s, &eager.drop);
    const StepOutputs g = graph.step(*graphed.student, *graphed.teacher, *graphed.loss,
                                     *graphed.optimizer, crops, s, &graphed.drop);
    CHECK(graph.recorded() == (step != 0 && step != 4));  // each shape: eager, then recorded
    const std::vector<float> ev = e.pending.loss.values.to_vector(),
                             gv = g.pending.loss.values.to_vector();
    CHECK(ev == gv);
    CHECK(g.pending.koleo.to_vector() == e.pending.koleo.to_vector());
    CHECK(g.pending.loss.teacher_temp == s.teacher_temp);
    CHECK(differing(state_of(eager), state_of(graphed)).empty());
  }
  cu::set_poison_allocations(false);
  CHECK(graph.recordings() == 2);
  const DeviceGraphSize size = graph.size();
  CHECK(size.nodes > 100);  // a few hundred launches for this two-block model
  CHECK(size.arena_peak > 0);
  CHECK(size.arena_peak <= size.arena_bytes);
}

TEST_CASE("a capture refuses uploads, read-backs and synchronisation, and keeps nothing",
          "[train][graph]") {
  const Backend& be = backend(Device::cuda);
  const Tensor host = Tensor::full({4}, 1.0);
  const Tensor dev = host.to(Device::cuda);
  be.graph_begin();
  CHECK_THROWS_WITH(host.to(Device::cuda), Catch::Contains("an upload of 16 bytes inside"));
  CHECK_THROWS_WITH(dev.to(Device::cpu), Catch::Contains("a read-back of 16 bytes inside"));
  CHECK_THROWS_WITH(be.synchronize(), Catch::Contains("a synchronisation inside"));
  be.graph_abort();
  CHECK_FALSE(cu::capturing());
  CHECK(dev.to(Device::cpu).to_vector() == host.to_vector());  // the stream works again
}

TEST_CASE("the arena: addresses kept on every replay, buffers reused within a capture",
          "[train][graph]") {
  cu::set_poison_allocations(false);  // no memsets among the recorded work
  const Backend& be = backend(Device::cuda);
  const Tensor before = Tensor::full({64}, 2.0).to(Device::cuda);
  Tensor kept, freed_before = Tensor::full({64}, 5.0).to(Device::cuda);
  void* reused = nullptr;
  be.graph_begin();
  {
    Tensor a = add(before, before);  // 4, an arena buffer freed inside the capture
    reused = a.raw_data();
    kept = add(a, before);    // 6: may take a's place once a is gone
    freed_before = Tensor();  // an older buffer: freed when the capture ends
  }
  Tensor c = add(kept, before);   // 8
  CHECK(c.raw_data() == reused);  // a's bytes went back to the arena and came out again
  DeviceGraph* graph = be.graph_end();
  CHECK(be.graph_size(graph).nodes == 3);
  // Nothing ran while recording; each launch runs the three adds into the same buffers.
  for (int i = 0; i < 2; ++i) {
    be.graph_launch(graph);
    CHECK(kept.to(Device::cpu).to_vector() == std::vector<float>(64, 6.f));
    CHECK(c.to(Device::cpu).to_vector() == std::vector<float>(64, 8.f));
  }
  // Freed after the capture, a buffer stays the graph's: the next launch still writes there.
  void* kept_at = kept.raw_data();
  kept = Tensor();
  const Tensor other = Tensor::full({64}, 0.0).to(Device::cuda);
  CHECK(other.raw_data() != kept_at);
  be.graph_destroy(graph);
  // The arena's last buffer, freed while another capture records: its slabs go back once that
  // capture ends (cudaFree would end it), and the new capture is not disturbed.
  be.graph_begin();
  c = Tensor();
  Tensor d = add(before, before);
  DeviceGraph* next = be.graph_end();
  be.graph_launch(next);
  CHECK(d.to(Device::cpu).to_vector() == std::vector<float>(64, 4.f));
  be.graph_destroy(next);
}

TEST_CASE("dino train with run.cuda_graph writes the checkpoint and metrics of a run without",
          "[train][graph]") {
  // The pipelined loop with GPU augmentation, the last-layer freeze ending mid-run and the
  // teacher temperature's warm-up: everything the graph must take from the host each step.
  auto recipe = small_recipe(10);
  recipe["run"]["knn"] = false;
  recipe["optim"]["freeze_last_layer"] = 0.25;       // 4 steps of 16 per epoch
  recipe["loss"]["warmup_teacher_temp_epochs"] = 1;  // a new temperature every step
  recipe["loss"]["teacher_temp"] = 0.04;
  TrainOptions o;
  o.quiet = true;
  o.device = "cuda";
  o.out_dir = fresh_dir("step_graph", "eager");
  train(recipe, o);
  recipe["run"]["cuda_graph"] = true;
  TrainOptions og = o;
  og.out_dir = fresh_dir("step_graph", "graph");
  train(recipe, og);
  const SafeTensors a = load_safetensors(o.out_dir + "/checkpoint.safetensors");
  const SafeTensors b = load_safetensors(og.out_dir + "/checkpoint.safetensors");
  CHECK(differing(a.tensors, b.tensors).empty());
  // The metrics agree line by line but for the timing keys.
  auto metrics = [](const std::string& dir) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(dir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      for (const char* k : {"data_wait_ms", "images_per_second"}) j.erase(k);
      lines.push_back(j);
    }
    return lines;
  };
  const auto ma = metrics(o.out_dir), mb = metrics(og.out_dir);
  REQUIRE(ma.size() == 10);
  for (size_t i = 0; i < ma.size(); ++i) CHECK(ma[i].dump() == mb[i].dump());
}
