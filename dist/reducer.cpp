#include "dist/reducer.h"

#include <cstring>

#include "core/autograd.h"
#include "core/backend.h"

namespace dino::dist {

namespace {

// Every gradient view starts 64 elements (256 bytes in f32) into its bucket, the alignment
// the vectorised clipping and AdamW kernels expect of a fresh allocation.
constexpr int64_t kAlignElements = 64;

int64_t round_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

}  // namespace

// Two timing events on the communicator's device, recorded on its compute queue when finish()
// begins and when the device may go on (on the CPU: the host's clock at those points).
struct GradReducer::Timing {
  const Backend& device;
  DeviceEvent* backward_done = nullptr;
  DeviceEvent* reduced = nullptr;
  explicit Timing(const Backend& b)
      : device(b), backward_done(b.event_create(true)), reduced(b.event_create(true)) {}
  ~Timing() {
    try {
      device.event_destroy(backward_done);
      device.event_destroy(reduced);
    } catch (const Error&) {  // a failed device: its error surfaced where the failure happened
    }
  }
};

GradReducer::GradReducer(Communicator& comm, std::vector<std::pair<std::string, Tensor>> params,
                         int64_t bucket_bytes)
    : comm_(comm), params_(std::move(params)), bucket_bytes_(bucket_bytes) {
  DINO_CHECK(!params_.empty(), "[dist] no parameters to reduce");
  DINO_CHECK(bucket_bytes > 0, "[dist] bucket size must be positive, got ", bucket_bytes);
  for (const auto& [name, p] : params_) {
    DINO_CHECK(p.requires_grad() && !p.grad_fn(), "[dist] '", name,
               "' is not a trainable parameter");
    DINO_CHECK(p.device() == comm.device(), "[dist] '", name, "' is on ", device_name(p.device()),
               ", the ", comm.backend(), " communicator reduces ", device_name(comm.device()),
               " tensors");
    DINO_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "[dist] '", name, "' is ",
               dtype_name(p.dtype()), "; gradients are reduced in f32 or f64");
  }
  std::vector<size_t> reverse(params_.size());
  for (size_t i = 0; i < reverse.size(); ++i) reverse[i] = reverse.size() - 1 - i;
  build_buckets(reverse);
  for (size_t i = 0; i < params_.size(); ++i)
    add_grad_ready_hook(params_[i].second, [this, i](const Tensor&) { on_ready(i); });
  prepare();
}

GradReducer::~GradReducer() {
  in_flight_.clear();  // waits for what is still running
  for (auto& [name, p] : params_) clear_grad_ready_hooks(p);
}

void GradReducer::build_buckets(const std::vector<size_t>& order) {
  buckets_.clear();
  bucket_of_.assign(params_.size(), 0);
  Bucket cur;
  int64_t elements = 0;
  auto close = [&] {
    if (cur.params.empty()) return;
    const Tensor& first = params_[cur.params[0]].second;
    cur.flat = Tensor::zeros({elements}, first.dtype(), first.device());
    buckets_.push_back(std::move(cur));
    cur = Bucket();
    elements = 0;
  };
  for (size_t i : order) {
    const Tensor& p = params_[i].second;
    if (!cur.params.empty() && (cur.bytes + int64_t(p.nbytes()) > bucket_bytes_ ||
                                p.dtype() != params_[cur.params[0]].second.dtype()))
      close();
    bucket_of_[i] = buckets_.size();
    cur.params.push_back(i);
    cur.offsets.push_back(elements);
    elements += round_up(p.numel(), kAlignElements);
    cur.bytes += int64_t(p.nbytes());
  }
  close();
}

int64_t GradReducer::bytes_per_step() const {
  int64_t total = 0;
  for (const Bucket& b : buckets_) total += b.bytes;
  return total;
}

void GradReducer::prepare() {
  ready_.assign(params_.size(), false);
  waiting_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = int(buckets_[b].params.size());
  in_flight_.clear();
  in_flight_.resize(buckets_.size());
  next_launch_ = 0;
}

void GradReducer::on_ready(size_t param) {
  if (ready_[param]) return;
  ready_[param] = true;
  --waiting_[bucket_of_[param]];
  while (next_launch_ < buckets_.size() && waiting_[next_launch_] == 0) launch(next_launch_++);
  for (size_t b = 0; b < next_launch_; ++b)
    if (in_flight_[b]) in_flight_[b]->progress();
}

void GradReducer::launch(size_t b) {
  Bucket& bucket = buckets_[b];
  const size_t elem = dtype_size(bucket.flat.dtype());
  for (size_t j = 0; j < bucket.params.size(); ++j) {
    Tensor& p = params_[bucket.params[j]].second;
    Tensor view = make_view(bucket.flat, p.shape(), size_t(bucket.offsets[j]) * elem);
    view.copy_from(p.grad());
    p.set_grad(view);
  }
  in_flight_[b] = comm_.start_all_reduce(bucket.flat, ReduceOp::mean);
}

void GradReducer::finish() {
  if (timing_) timing_state_->device.event_record(timing_state_->backward_done, Queue::compute);
  for (size_t b = next_launch_; b < buckets_.size(); ++b) {
    if (waiting_[b] != 0) {
      std::string missing;
      for (size_t i : buckets_[b].params)
        if (!ready_[i]) missing += (missing.empty() ? "" : ", ") + params_[i].first;
      throw Error(str_cat("[dist] the backward gave no gradient to ", missing,
                          ": data-parallel "
                          "training reduces every trainable parameter each step, so each must "
                          "take part in the loss"));
    }
    launch(b);
  }
  next_launch_ = buckets_.size();
  for (auto& p : in_flight_)
    if (p) p->wait();
  in_flight_.clear();
  if (timing_) timing_state_->device.event_record(timing_state_->reduced, Queue::compute);
}

void GradReducer::set_timing(bool on) {
  timing_ = on;
  if (on && !timing_state_)
    timing_state_ = std::make_unique<Timing>(backend(comm_.device(), "dist"));
}

double GradReducer::last_exposed_ms() {
  DINO_CHECK(timing_, "[dist] last_exposed_ms() needs set_timing(true)");
  return timing_state_->device.elapsed_ms(timing_state_->backward_done, timing_state_->reduced);
}

}  // namespace dino::dist
