#include "dist/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "dist/abort.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/runtime.h"

namespace dino::dist {

namespace {

#define NCCL_CHECK(call)                                                                        \
  do {                                                                                          \
    const ncclResult_t dino_nccl_rc_ = (call);                                                  \
    if (dino_nccl_rc_ != ncclSuccess)                                                           \
      throw ::dino::Error(::dino::str_cat("[nccl] ", #call,                                     \
                                          " failed: ", ncclGetErrorString(dino_nccl_rc_), " (", \
                                          ncclGetLastError(nullptr), ")"));                     \
  } while (0)

using Clock = std::chrono::steady_clock;

cudaStream_t compute_stream() { return static_cast<cudaStream_t>(kernels::cuda::stream()); }

ncclDataType_t nccl_type(DType t) { return t == DType::f64 ? ncclFloat64 : ncclFloat32; }

// An event that outlives whichever of its holders (the pending collective, the watchdog)
// lets go last.
struct Event {
  cudaEvent_t e = nullptr;
  Event() { CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(e); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

class NcclPending : public Pending {
 public:
  NcclPending(std::shared_ptr<Event> done, Tensor t) : done_(std::move(done)), t_(std::move(t)) {}
  ~NcclPending() override {
    if (done_) cudaStreamWaitEvent(compute_stream(), done_->e, 0);
  }
  void wait() override {
    if (!done_) return;
    CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done_->e, 0));
    done_.reset();
  }

 private:
  std::shared_ptr<Event> done_;
  Tensor t_;  // kept alive until the compute stream is ordered after the collective
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator* bootstrap, int rank, int size, double timeout_s)
      : Communicator(rank, size, timeout_s) {
    int version = 0;
    NCCL_CHECK(ncclGetVersion(&version));
    DINO_CHECK(version >= 21000, "[nccl] NCCL ", nccl_version(),
               " is too old: the gradient "
               "average needs ncclAvg (NCCL 2.10 or later)");
    ncclUniqueId id;
    if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (size > 1) {
      DINO_CHECK(bootstrap && bootstrap->size() == size, "[nccl] ", size,
                 " ranks need a host "
                 "communicator (MPI) to share the NCCL id; this build or launch has none");
      Tensor bytes = Tensor::empty({int64_t(sizeof id)}, DType::u8);
      std::memcpy(bytes.raw_data(), &id, sizeof id);
      bootstrap->broadcast(bytes, 0);
      std::memcpy(&id, bytes.raw_data(), sizeof id);
    }
    CUDA_CHECK(cudaGetDevice(&device_));
    NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    ncclComm_t comm = comm_;
    abort_step_ = add_abort_step([comm] { ncclCommAbort(comm); });
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    remove_abort_step(abort_step_);
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }

  const char* backend() const override { return "nccl"; }
  Device device() const override { return Device::cuda; }

  std::unique_ptr<Pending> start_all_reduce(const Tensor& t, ReduceOp op) override {
    check_tensor("all_reduce", t, true);
    after_compute();
    NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), size_t(t.numel()), nccl_type(t.dtype()),
                             op == ReduceOp::mean ? ncclAvg : ncclSum, comm_, stream_));
    count_bytes(int64_t(t.nbytes()));
    written(t);
    return std::make_unique<NcclPending>(track("all_reduce", t.nbytes()), t);
  }

  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t, false);
    after_compute();
    NCCL_CHECK(
        ncclBroadcast(t.raw_data(), t.raw_data(), t.nbytes(), ncclUint8, root, comm_, stream_));
    count_bytes(int64_t(t.nbytes()));
    if (rank() != root) written(t);
    NcclPending(track("broadcast", t.nbytes()), t).wait();
  }

  void all_gather(const Tensor& out, const Tensor& in) override {
    check_tensor("all_gather", in, false);
    check_tensor("all_gather", out, false);
    DINO_CHECK(out.dtype() == in.dtype() && out.nbytes() == in.nbytes() * size_t(size()),
               "[nccl] all_gather: out ", out.str(), " must hold ", size(), " x in ", in.str());
    after_compute();
    NCCL_CHECK(
        ncclAllGather(in.raw_data(), out.raw_data(), in.nbytes(), ncclUint8, comm_, stream_));
    count_bytes(int64_t(in.nbytes()));
    written(out);
    NcclPending(track("all_gather", out.nbytes()), out).wait();
  }

  // One float summed over the ranks, waited for on the host.
  void barrier() override {
    Tensor one = Tensor::zeros({1}, DType::f32, Device::cuda);
    after_compute();
    NCCL_CHECK(
        ncclAllReduce(one.raw_data(), one.raw_data(), 1, ncclFloat32, ncclSum, comm_, stream_));
    const std::shared_ptr<Event> done = track("barrier", 0);
    for (;;) {  // the watchdog aborts the job if this never completes
      const cudaError_t e = cudaEventQuery(done->e);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) CUDA_CHECK(e);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    NcclPending(done, one).wait();
  }

  [[noreturn]] void abort(const std::string& message) override { abort_job(message); }

  void graph_launched(const char* what, int64_t bytes) override {
    count_bytes(bytes);
    watch_event(std::make_shared<Event>(), compute_stream(), what, size_t(bytes));
  }

 private:
  // Orders the NCCL stream after everything queued on the compute stream so far.
  void after_compute() {
    CUDA_CHECK(cudaEventRecord(ready_, compute_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  // An event after the collective just queued, watched until it completes. A collective
  // recorded into a CUDA graph runs only when the graph is launched, and its event, recorded in
  // the capture, may not be queried: graph_launched() watches the launch instead.
  std::shared_ptr<Event> track(const char* what, size_t bytes) {
    auto done = std::make_shared<Event>();
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (capture != cudaStreamCaptureStatusNone)
      CUDA_CHECK(cudaEventRecord(done->e, stream_));
    else
      watch_event(done, stream_, what, bytes);
    return done;
  }

  // Records `done` on `stream` and hands it to the watchdog.
  void watch_event(const std::shared_ptr<Event>& done, cudaStream_t stream, const char* what,
                   size_t bytes) {
    CUDA_CHECK(cudaEventRecord(done->e, stream));
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.push_back({done, Clock::now(), what, bytes});
  }

  void watch() {
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      ncclResult_t async = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
      if (rc != ncclSuccess || (async != ncclSuccess && async != ncclInProgress))
        abort_job(str_cat("NCCL reports an error on this rank's communicator: ",
                          ncclGetErrorString(rc != ncclSuccess ? rc : async), " (",
                          ncclGetLastError(comm_), "); aborting the job"));
      while (!in_flight_.empty()) {
        const cudaError_t e = cudaEventQuery(in_flight_.front().done->e);
        if (e == cudaSuccess) {
          in_flight_.pop_front();
          continue;
        }
        if (e != cudaErrorNotReady)
          abort_job(str_cat("CUDA error while NCCL ", in_flight_.front().what,
                            " ran: ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                            "); aborting the job"));
        const InFlight& f = in_flight_.front();
        const double waited = std::chrono::duration<double>(Clock::now() - f.start).count();
        if (waited > timeout_s())
          abort_job(str_cat("NCCL ", f.what, " (", f.bytes, " bytes) has not completed after ",
                            timeout_s(), " s: another rank has died or stopped; aborting the job"));
        break;
      }
    }
  }

  struct InFlight {
    std::shared_ptr<Event> done;
    Clock::time_point start;
    const char* what;
    size_t bytes;
  };

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  int device_ = 0;
  int abort_step_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<InFlight> in_flight_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator* bootstrap, int rank, int size,
                                                     double timeout_s) {
  return std::make_unique<NcclCommunicator>(bootstrap, rank, size, timeout_s);
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "NCCL (version unknown)";
  // 2.9 and later encode X.Y.Z as X * 10000 + Y * 100 + Z.
  return str_cat("NCCL ", v / 10000, ".", v / 100 % 100, ".", v % 100);
}

}  // namespace dino::dist
