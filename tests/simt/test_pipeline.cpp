// The upload of a training batch (train/batch_upload.h) overlaps the step before it. The
// emulator completes every call when it is made, so what it can show is the order in which the
// host queued the work on the streams (its stream log): the batch's copies go to the copy
// stream, from pinned memory; they wait for no event recorded during the previous step (the
// one the device computes meanwhile); the compute stream waits for the copies' event before
// the first kernel that reads them; and copied() waits for exactly that event.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <optional>

#include "core/ops.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "kernels/cuda/runtime.h"
#include "train/batch_upload.h"

using namespace dino;
namespace cu = dino::kernels::cuda;
using dino::simt::StreamOp;

namespace {

struct StreamLog {
  StreamLog() { dino::simt::set_stream_log(true); }
  ~StreamLog() { dino::simt::set_stream_log(false); }
  static size_t size() { return dino::simt::stream_log().size(); }
};

// The index of the last record of `event` before `before`, or -1.
long last_record(const std::vector<StreamOp>& log, cudaEvent_t event, size_t before) {
  for (size_t i = before; i-- > 0;)
    if (log[i].kind == StreamOp::record && log[i].event == event) return long(i);
  return -1;
}

void check_uploads_overlap(data::CropFormat format) {
  data::SyntheticConfig sc;
  sc.n = 40;
  sc.size = 23;
  sc.channels = 3;
  const auto ds = data::open_synthetic(sc, data::Split::train);
  data::MultiCropConfig cfg;
  cfg.global = {2, 16, 0.4f, 1.f};
  cfg.local = {2, 8, 0.05f, 0.4f};
  data::LoaderOptions opt;
  opt.threads = 2;
  opt.format = format;
  if (format == data::CropFormat::f32) opt.allocator = BatchUploader::allocator(Device::cuda);
  data::MultiCropLoader loader(*ds, cfg, 4, 7, opt);
  loader.start(0);
  BatchUploader uploader(Device::cuda);
  const auto copy = static_cast<cudaStream_t>(cu::copy_stream());
  const auto compute = static_cast<cudaStream_t>(cu::stream());

  StreamLog on;
  struct InFlight {
    data::MultiCropLoader::Lease batch;
    BatchUploader::Upload upload;
  };
  std::optional<InFlight> previous;
  size_t previous_step_begins = 0;  // where the log of the previous step's kernels begins
  for (int t = 0; t < 6; ++t) {     // past the uploader's ring of device buffers, twice
    INFO("batch " << t);
    InFlight f;
    f.batch = loader.next();
    const size_t begin = StreamLog::size();
    f.upload = uploader.upload(*f.batch);
    const size_t end = StreamLog::size();
    // The step: kernels on the compute stream that read the views.
    Tensor sum;
    for (const Tensor& v : f.upload.views) sum = sum.defined() ? add(sum, mean(v)) : mean(v);
    REQUIRE(std::isfinite(sum.item()));
    const std::vector<StreamOp> log = dino::simt::stream_log();

    long copies = 0, first_compute = -1, copied_record = -1, compute_wait = -1;
    for (size_t i = begin; i < end; ++i) {
      const StreamOp& op = log[i];
      if (op.kind == StreamOp::copy && op.direction == cudaMemcpyHostToDevice) {
        ++copies;
        CHECK(op.stream == copy);
        CHECK(dino::simt::is_pinned(op.src, op.bytes));
        CHECK(copied_record < 0);  // every copy before the event that says they landed
      }
      if (op.kind == StreamOp::record && op.stream == copy) copied_record = long(i);
      if (op.kind == StreamOp::wait && op.stream == compute && copied_record >= 0 &&
          op.event == log[size_t(copied_record)].event)
        compute_wait = long(i);
      const bool compute_work = (op.kind == StreamOp::kernel && op.stream == compute) ||
                                (op.kind == StreamOp::copy && op.stream == compute);
      if (compute_work && first_compute < 0) first_compute = long(i);
      // Nothing the copy stream (or the host) waits for was recorded during the previous step.
      if (t > 0 && (op.kind == StreamOp::wait || op.kind == StreamOp::sync_event) &&
          op.stream != compute)
        CHECK(last_record(log, op.event, i) < long(previous_step_begins));
    }
    CHECK(copies >= 1);
    REQUIRE(copied_record >= 0);
    CHECK(compute_wait > copied_record);
    REQUIRE(first_compute >= 0);
    CHECK(first_compute > compute_wait);

    // copied() waits for the event recorded after this batch's copies.
    const size_t before = StreamLog::size();
    uploader.copied(f.upload);
    const std::vector<StreamOp> after = dino::simt::stream_log();
    bool synced = false;
    for (size_t i = before; i < after.size(); ++i)
      synced |= after[i].kind == StreamOp::sync_event &&
                after[i].event == log[size_t(copied_record)].event;
    CHECK(synced);

    if (previous) previous->batch.reset();
    previous = std::move(f);
    previous_step_begins = end;
  }
}

}  // namespace

TEST_CASE(
    "batch upload: f32 views go from the loader's pinned buffers on the copy stream, "
    "overlapping the previous step",
    "[pipeline]") {
  check_uploads_overlap(data::CropFormat::f32);
}

TEST_CASE("batch upload: packed sources go on the copy stream, overlapping the previous step",
          "[pipeline]") {
  check_uploads_overlap(data::CropFormat::sources);
}
