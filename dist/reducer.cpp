#include "dist/reducer.h"

#include <chrono>
#include <cstring>

#include "core/autograd.h"
#ifdef DINO_HAS_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/runtime.h"
#endif

namespace dino::dist {

namespace {

// Every gradient view starts 64 elements (256 bytes in f32) into its bucket, the alignment
// the vectorised clipping and AdamW kernels expect of a fresh allocation.
constexpr int64_t kAlignElements = 64;

int64_t round_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

}  // namespace

struct GradReducer::Timing {
  std::chrono::steady_clock::time_point host_begin;
  double host_ms = 0;
#ifdef DINO_HAS_CUDA
  cudaEvent_t backward_done = nullptr, reduced = nullptr;
  ~Timing() {
    if (backward_done) cudaEventDestroy(backward_done);
    if (reduced) cudaEventDestroy(reduced);
  }
#endif
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
  if (timing_) {
    timing_state_->host_begin = std::chrono::steady_clock::now();
#ifdef DINO_HAS_CUDA
    if (comm_.device() == Device::cuda)
      CUDA_CHECK(cudaEventRecord(timing_state_->backward_done,
                                 static_cast<cudaStream_t>(kernels::cuda::stream())));
#endif
  }
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
  if (timing_) {
    timing_state_->host_ms = std::chrono::duration<double, std::milli>(
                                 std::chrono::steady_clock::now() - timing_state_->host_begin)
                                 .count();
#ifdef DINO_HAS_CUDA
    if (comm_.device() == Device::cuda)
      CUDA_CHECK(cudaEventRecord(timing_state_->reduced,
                                 static_cast<cudaStream_t>(kernels::cuda::stream())));
#endif
  }
}

void GradReducer::set_timing(bool on) {
  timing_ = on;
  if (on && !timing_state_) {
    timing_state_ = std::make_unique<Timing>();
#ifdef DINO_HAS_CUDA
    if (comm_.device() == Device::cuda) {
      CUDA_CHECK(cudaEventCreate(&timing_state_->backward_done));
      CUDA_CHECK(cudaEventCreate(&timing_state_->reduced));
    }
#endif
  }
}

double GradReducer::last_exposed_ms() {
  DINO_CHECK(timing_, "[dist] last_exposed_ms() needs set_timing(true)");
#ifdef DINO_HAS_CUDA
  if (comm_.device() == Device::cuda) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(timing_state_->reduced));
    CUDA_CHECK(cudaEventElapsedTime(&ms, timing_state_->backward_done, timing_state_->reduced));
    return ms;
  }
#endif
  return timing_state_->host_ms;
}

}  // namespace dino::dist
