// A run's files: the folder refuses to be reused by accident, metrics.jsonl is line-atomic and
// cut back to the checkpoint on resume, write errors stop the run, checkpoints never hold a
// NaN, and the checkpoint policy waits for the steps it saves to be confirmed.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/atomic_file.h"
#include "train/backbone_file.h"
#include "train/checkpoint.h"
#include "train/checkpoint_policy.h"
#include "train/metrics_log.h"
#include "train/run_folder.h"
#include "train/step.h"
#include "train/trainer.h"
#include "train_fixtures.h"

using namespace dino;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_all(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

StepRecord record(int64_t step) {
  StepRecord r;
  r.step = step;
  r.stats.loss = 1.0 / double(step);
  return r;
}

std::string lines_for(int64_t from, int64_t to) {
  std::string out;
  for (int64_t s = from; s <= to; ++s)
    out += nlohmann::json{{"step", s}, {"loss", 1.0}}.dump() + "\n";
  return out;
}

}  // namespace

TEST_CASE("run folder: a folder holding a run is refused unless --resume or --force", "[files]") {
  const std::string dir = test::fresh_dir("run_files", "folder");
  CHECK_NOTHROW(check_run_folder(dir, false, false));  // empty
  write_all(dir + "/metrics.jsonl", "");
  CHECK_NOTHROW(check_run_folder(dir, false, false));  // an empty metrics file is no run
  write_all(dir + "/metrics.jsonl", lines_for(1, 3));
  CHECK_THROWS_WITH(check_run_folder(dir, false, false),
                    Catch::Contains("already holds a run") && Catch::Contains("--force"));
  CHECK_THROWS_WITH(check_run_folder(dir, true, false),
                    Catch::Contains("no checkpoint to continue from"));
  CHECK_NOTHROW(check_run_folder(dir, false, true));
  write_all(dir + "/checkpoint.safetensors", "x");
  CHECK_NOTHROW(check_run_folder(dir, true, false));
  CHECK_THROWS_WITH(check_run_folder(dir, true, true), Catch::Contains("give one of them"));
  CHECK_THROWS_WITH(check_run_folder(dir + "/metrics.jsonl", false, false),
                    Catch::Contains("is a file, not a folder"));
  CHECK(read_all(dir + "/metrics.jsonl") == lines_for(1, 3));  // checks change nothing
}

TEST_CASE("metrics.jsonl: every line is on disk as soon as its step is known", "[files]") {
  const std::string path = test::fresh_dir("run_files", "lines") + "/metrics.jsonl";
  MetricsLog log = MetricsLog::create(path);
  log.append(record(1), 4);
  log.append(record(2), 4);
  // No buffer in between: another reader (or a crash right now) sees both lines whole.
  const std::string text = read_all(path);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 2);
  CHECK(nlohmann::json::parse(text.substr(0, text.find('\n')))["step"] == 1);
  CHECK(nlohmann::json::parse(text.substr(0, text.find('\n')))["epoch"] == 0.25);
}

TEST_CASE("metrics.jsonl: resume cuts back to the checkpoint's step", "[files]") {
  const std::string path = test::fresh_dir("run_files", "resume") + "/metrics.jsonl";
  int64_t kept = -1;
  SECTION("lines past the checkpoint and a torn last line go") {
    write_all(path, lines_for(1, 7) + "{\"step\": 8, \"lo");
    MetricsLog log = MetricsLog::resume(path, 5, &kept);
    CHECK(kept == 5);
    log.append(record(6), 4);
    CHECK(read_all(path).substr(0, lines_for(1, 5).size()) == lines_for(1, 5));
  }
  SECTION("a run resumed earlier from an older checkpoint left duplicates: they go") {
    write_all(path, lines_for(1, 6) + lines_for(4, 9));
    MetricsLog::resume(path, 8, &kept);
    CHECK(kept == 6);
    CHECK(read_all(path) == lines_for(1, 6));
  }
  SECTION("a torn line glued to the next run's first line stops the kept part") {
    write_all(path, lines_for(1, 3) + "{\"step\": 4, \"lo" + lines_for(4, 6));
    MetricsLog::resume(path, 6, &kept);
    CHECK(kept == 3);
    CHECK(read_all(path) == lines_for(1, 3));
  }
  SECTION("a missing file starts empty") {
    MetricsLog::resume(path, 4, &kept);
    CHECK(kept == 0);
    CHECK(read_all(path).empty());
  }
}

TEST_CASE("metrics.jsonl: a write error (disk full) stops the run", "[files]") {
  if (!fs::exists("/dev/full")) return;
  MetricsLog log = MetricsLog::create("/dev/full");
  CHECK_THROWS_WITH(log.append(record(1), 4),
                    Catch::Contains("/dev/full") && Catch::Contains("No space left"));
}

TEST_CASE("atomic files: an error part-way leaves neither the file nor its temporary", "[files]") {
  const std::string dir = test::fresh_dir("run_files", "atomic");
  const std::string path = dir + "/out.json";
  write_all(path, "old");
  {
    AtomicFile f(path);
    f.write("new", 3);
    CHECK(read_all(path) == "old");  // not in place before commit()
  }
  CHECK(read_all(path) == "old");
  CHECK_FALSE(fs::exists(path + ".tmp"));
  write_file_atomically(path, "new");
  CHECK(read_all(path) == "new");
  CHECK_FALSE(fs::exists(path + ".tmp"));
  if (fs::exists("/dev/full")) {
    const std::string full = dir + "/full";
    fs::create_symlink("/dev/full", full + ".tmp");
    AtomicFile f(full);
    CHECK_THROWS_WITH(f.write("x", 1), Catch::Contains("No space left"));
  }
}

TEST_CASE("checkpoints: an update that made a weight non-finite is never written",
          "[files][train]") {
  const std::string dir = test::fresh_dir("run_files", "nan_checkpoint");
  const Recipe recipe = parse_recipe(test::small_recipe(4));
  auto student = build_student(recipe, 1);
  auto teacher = build_teacher(*student);
  DinoLoss loss(recipe.loss, 16);
  AdamW optimizer = make_optimizer(*student);
  CheckpointMeta meta;
  meta.config = recipe.json;
  meta.in_chans = 1;
  meta.step = 3;
  const std::string path = dir + "/checkpoint.safetensors";
  save_checkpoint(path, meta, *student, *teacher, loss, optimizer);
  const std::string good = read_all(path);

  // What a diverged AdamW step leaves: one NaN in the student, then an infinity in the teacher.
  student->backbone.blocks[0]->attn.qkv.weight.data<float>()[5] =
      std::numeric_limits<float>::quiet_NaN();
  meta.step = 4;
  CHECK_THROWS_WITH(
      save_checkpoint(path, meta, *student, *teacher, loss, optimizer),
      Catch::Contains("after step 4") &&
          Catch::Contains("'student.backbone.blocks.0.attn.qkv.weight' (1 NaN, 0 infinite") &&
          Catch::Contains("is not finite"));
  student->backbone.blocks[0]->attn.qkv.weight.data<float>()[5] = 0.f;
  teacher->head.last_layer.weight_v.data<float>()[0] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(save_checkpoint(path, meta, *student, *teacher, loss, optimizer),
                    Catch::Contains("'teacher.head.last_layer"));
  CHECK(read_all(path) == good);  // the checkpoint on disk is the last good one
  CHECK_FALSE(fs::exists(path + ".tmp"));
  CHECK_NOTHROW(export_backbone(dir + "/backbone.safetensors", teacher->backbone));
  teacher->backbone.pos_embed.data<float>()[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(export_backbone(dir + "/nan.safetensors", teacher->backbone),
                    Catch::Contains("'pos_embed' (1 NaN"));
  CHECK_FALSE(fs::exists(dir + "/nan.safetensors"));
}

TEST_CASE("checkpoint policy: saves only steps confirmed finite", "[files]") {
  CheckpointPolicy p(4, 10, 0);
  p.confirm(3);
  CHECK_FALSE(p.due(3, false));
  CHECK_FALSE(p.due(4, false));  // step 4 ran, its statistics have not arrived yet
  p.confirm(4);
  CHECK(p.due(4, false));
  p.saved(4);
  CHECK_FALSE(p.due(4, true));  // already saved
  p.confirm(5);
  CHECK(p.due(5, true));  // a stop saves at the next confirmed boundary
  p.confirm(10);
  CHECK(p.due(10, false));  // the end
  CheckpointPolicy never(0, 10, 2);
  never.confirm(4);
  CHECK_FALSE(never.due(4, false));
  CHECK_FALSE(never.due(2, true));  // nothing new since the resumed checkpoint
}

TEST_CASE("checkpoint policy: says which unconfirmed steps a checkpoint waits for", "[files]") {
  // A loop that learns a step's loss one step late asks wanted() right after queueing the
  // step, waits for its statistics when the answer is yes, and only then may save.
  CheckpointPolicy p(4, 10, 0);
  p.confirm(3);
  CHECK_FALSE(p.wanted(3, false));
  CHECK(p.wanted(4, false));     // the periodic checkpoint
  CHECK_FALSE(p.due(4, false));  // not before step 4 is confirmed
  CHECK(p.wanted(5, true));      // a stop signal
  CHECK_FALSE(p.due(5, true));
  CHECK(p.wanted(10, false));  // the final checkpoint
  CHECK_FALSE(p.due(10, false));
  p.confirm(10);
  CHECK(p.due(10, false));
  p.saved(10);
  CHECK_FALSE(p.wanted(10, true));
}
