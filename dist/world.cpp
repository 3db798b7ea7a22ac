#include "dist/world.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "core/backend.h"
#include "core/error.h"
#include "dist/abort.h"
#include "dist/nccl.h"
#ifdef DINO_HAS_MPI
#include "dist/mpi.h"
#endif

namespace dino::dist {

WorldOptions world_options_from_environment() {
  WorldOptions o;
  if (const char* text = std::getenv("DINO_DIST_TIMEOUT")) {
    char* end = nullptr;
    o.timeout_s = std::strtod(text, &end);
    DINO_CHECK(end != text && *end == '\0' && o.timeout_s > 0, "[dist] DINO_DIST_TIMEOUT is '",
               text, "'; expected a number of seconds above 0");
  }
  if (const char* text = std::getenv("DINO_DIST_COLLECTIVES")) {
    o.collectives = text;
    DINO_CHECK(o.collectives == "auto" || o.collectives == "always",
               "[dist] DINO_DIST_COLLECTIVES is '", text, "'; expected auto or always");
  }
  return o;
}

World::World(const WorldOptions& options) : timeout_s_(options.timeout_s) {
  DINO_CHECK(options.collectives == "auto" || options.collectives == "always",
             "[dist] --collectives must be auto or always, got '", options.collectives, "'");
  DINO_CHECK(options.timeout_s > 0, "[dist] the collective timeout must be positive, got ",
             options.timeout_s);
  const Launch launch = detect_launch();
  launcher_ = launch.launcher;
  const bool always = options.collectives == "always";
#ifdef DINO_HAS_MPI
  // Alone and "always": MPI's singleton start, a world of one with MPI running.
  active_ = launch.launched() || always;
  if (active_) {
    const MpiWorld w = mpi_init();
    mpi_ = true;
    rank_ = w.rank, size_ = w.size, local_rank_ = w.local_rank, local_size_ = w.local_size;
    set_abort_identity(rank_, size_);
    host_ = make_mpi_communicator(timeout_s_);
  }
#else
  DINO_CHECK(!launch.launched() || launch.size == 1, "[dist] started by ", launch.launcher,
             " as rank ", launch.rank, " of ",
             launch.size < 0 ? std::string("several") : std::to_string(launch.size),
             ", but this build has no MPI, so it can only run as a world of one (each rank would "
             "train alone and write the same files). Install libopenmpi-dev (tools/setup.sh), "
             "reconfigure and rebuild, or run without mpirun");
  active_ = always;  // NCCL alone, in a world of one
#endif
}

World::~World() {
  device_.reset();
  host_.reset();
#ifdef DINO_HAS_MPI
  if (mpi_) mpi_finalize();
#endif
}

std::string World::describe() const {
  if (!active_) return "a world of one";
  std::string s = str_cat(size_, size_ == 1 ? " rank" : " ranks");
  if (!launcher_.empty()) s += str_cat(" (", launcher_, ", ", local_size_, " on this node)");
  if (mpi_) s += ", MPI";
  if (!device_backend_.empty() && device_backend_ != "mpi") s += " + " + device_backend_;
  return s;
}

void World::bind(Device device) {
  if (device != Device::cpu) {
    const Backend& b = backend(device, "dist", false);
    const int count = b.device_count();
    DINO_CHECK(count > 0, "[dist] no ", device_name(device),
               " device on this node: ", b.description());
    b.select_device(local_rank_ % count);
    return;
  }
  if (local_size_ > 1 && !std::getenv("OMP_NUM_THREADS")) {
    // The launcher may already have bound this rank to fewer cores (mpirun binds each of two
    // ranks to one core): never more threads than those.
    const int node = int(std::max(1u, std::thread::hardware_concurrency()));
    omp_set_num_threads(std::max(1, std::min(omp_get_num_procs(), node / local_size_)));
  }
}

Communicator* World::comm(Device device) {
  if (!active_) return nullptr;
  if (device == Device::cpu) {
    DINO_CHECK(host_, "[dist] data-parallel training on the CPU needs MPI; this build has none");
    return host_.get();
  }
  if (!device_) {
    device_ = make_nccl_communicator(host_.get(), rank_, size_, timeout_s_);
    device_backend_ = nccl_version();
  }
  return device_.get();
}

}  // namespace dino::dist
