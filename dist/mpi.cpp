#include "dist/mpi.h"

#include <mpi.h>

#include <chrono>
#include <thread>

#include "dist/abort.h"

namespace dino::dist {

namespace {

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, size_t(len));
}

#define MPI_CHECK(call)                                                                            \
  do {                                                                                             \
    const int dino_mpi_rc_ = (call);                                                               \
    if (dino_mpi_rc_ != MPI_SUCCESS)                                                               \
      throw ::dino::Error(::dino::str_cat("[mpi] ", #call, " failed: ", mpi_error(dino_mpi_rc_))); \
  } while (0)

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    default: return MPI_BYTE;
  }
}

// Elements as MPI counts them: bytes for the types MPI has no name for.
int mpi_count(const Tensor& t) {
  const size_t n = mpi_type(t.dtype()) == MPI_BYTE ? t.nbytes() : size_t(t.numel());
  DINO_CHECK(n <= size_t(INT32_MAX), "[mpi] a collective over ", n,
             " elements exceeds MPI's int count");
  return int(n);
}

void scale_in_place(const Tensor& t, double s) {
  if (t.dtype() == DType::f32) {
    float* p = t.data<float>();
    const float f = float(s);
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= f;
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= s;
  }
}

class MpiCommunicator;

// Polls `req` until it completes; past the timeout the job is aborted as hung. MPI moves a
// large message along only inside its calls, so it polls without pause (yielding the core),
// as MPI_Wait itself would; after a few seconds (a peer busy writing a checkpoint, or dead)
// it sleeps between polls.
void wait_request(MPI_Request& req, const MpiCommunicator& comm, const char* what, size_t bytes);

class MpiPending : public Pending {
 public:
  MpiPending(const MpiCommunicator& comm, MPI_Request req, Tensor t, ReduceOp op)
      : comm_(comm), req_(req), t_(std::move(t)), op_(op) {}
  ~MpiPending() override { wait(); }
  void wait() override;
  void progress() override {
    int done = 0;
    if (req_ != MPI_REQUEST_NULL) MPI_Test(&req_, &done, MPI_STATUS_IGNORE);
    if (done) finish();
  }

 private:
  void finish();

  const MpiCommunicator& comm_;
  MPI_Request req_;
  Tensor t_;
  ReduceOp op_;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int size, double timeout_s)
      : Communicator(rank, size, timeout_s), comm_(comm) {}
  ~MpiCommunicator() override { MPI_Comm_free(&comm_); }

  const char* backend() const override { return "mpi"; }
  Device device() const override { return Device::cpu; }

  std::unique_ptr<Pending> start_all_reduce(const Tensor& t, ReduceOp op) override {
    check_tensor("all_reduce", t, true);
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), mpi_count(t), mpi_type(t.dtype()), MPI_SUM,
                             comm_, &req));
    count_bytes(int64_t(t.nbytes()));
    return std::make_unique<MpiPending>(*this, req, t, op);
  }

  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t, false);
    MPI_Request req;
    MPI_CHECK(MPI_Ibcast(t.raw_data(), mpi_count(t), mpi_type(t.dtype()), root, comm_, &req));
    wait_request(req, *this, "broadcast", t.nbytes());
    count_bytes(int64_t(t.nbytes()));
    if (rank() != root) written(t);
  }

  void all_gather(const Tensor& out, const Tensor& in) override {
    check_tensor("all_gather", in, false);
    check_tensor("all_gather", out, false);
    DINO_CHECK(out.dtype() == in.dtype() && out.nbytes() == in.nbytes() * size_t(size()),
               "[mpi] all_gather: out ", out.str(), " must hold ", size(), " x in ", in.str());
    MPI_Request req;
    const int bytes = int(in.nbytes());
    DINO_CHECK(in.nbytes() <= size_t(INT32_MAX), "[mpi] all_gather of ", in.nbytes(),
               " bytes exceeds MPI's int count");
    MPI_CHECK(MPI_Iallgather(in.raw_data(), bytes, MPI_BYTE, out.raw_data(), bytes, MPI_BYTE, comm_,
                             &req));
    wait_request(req, *this, "all_gather", out.nbytes());
    count_bytes(int64_t(in.nbytes()));
    written(out);
  }

  void barrier() override {
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(comm_, &req));
    wait_request(req, *this, "barrier", 0);
  }

  [[noreturn]] void abort(const std::string& message) override { abort_job(message); }

 private:
  MPI_Comm comm_;
};

void wait_request(MPI_Request& req, const MpiCommunicator& comm, const char* what, size_t bytes) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  for (;;) {
    int done = 0;
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > comm.timeout_s())
      abort_job(str_cat("MPI ", what, " (", bytes, " bytes) has not completed after ",
                        comm.timeout_s(),
                        " s: another rank has died or stopped; aborting the job"));
    if (waited > 5)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    else
      std::this_thread::yield();
  }
}

void MpiPending::wait() {
  if (!t_.defined()) return;
  if (req_ != MPI_REQUEST_NULL) wait_request(req_, comm_, "all_reduce", t_.nbytes());
  finish();
}

// The request is complete (MPI has set it to MPI_REQUEST_NULL): the mean's division, once.
void MpiPending::finish() {
  if (!t_.defined()) return;
  if (op_ == ReduceOp::mean && comm_.size() > 1) scale_in_place(t_, 1.0 / comm_.size());
  t_.mark_modified();
  t_ = Tensor();
}

}  // namespace

namespace {
int g_abort_step = -1;  // MPI_Abort, between mpi_init and mpi_finalize
}  // namespace

MpiWorld mpi_init() {
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  DINO_CHECK(!initialized, "[mpi] MPI is already initialised");
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MpiWorld w;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  MPI_Comm node;
  MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_size(node, &w.local_size));
  MPI_CHECK(MPI_Comm_rank(node, &w.local_rank));
  MPI_Comm_free(&node);
  g_abort_step = add_abort_step([] { MPI_Abort(MPI_COMM_WORLD, 1); });
  return w;
}

void mpi_finalize() {
  // After MPI_Finalize an abort can only exit this process (the launcher then stops the rest).
  if (g_abort_step >= 0) remove_abort_step(g_abort_step);
  g_abort_step = -1;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  MPI_Comm comm;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_CHECK(MPI_Comm_size(comm, &size));
  return std::make_unique<MpiCommunicator>(comm, rank, size, timeout_s);
}

}  // namespace dino::dist
