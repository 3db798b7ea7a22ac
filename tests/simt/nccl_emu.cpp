// The NCCL stand-in of tests/simt/include/nccl.h: MPI host collectives over a duplicate of
// MPI_COMM_WORLD. It checks what the real library would refuse (ranks that disagree on the id,
// unsupported types and operations), so the calling code is held to NCCL's contract. On a
// stream being captured into a CUDA graph a collective is recorded, as NCCL's kernels are, and
// runs each time the graph is launched.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <vector>

struct ncclComm {
  int rank = 0, size = 1;
  MPI_Comm mpi = MPI_COMM_NULL;  // MPI_COMM_NULL in a world of one
  std::atomic<ncclResult_t> async{
      ncclSuccess};  // a recorded collective's failure, for the error poll
};

namespace {

std::string g_last_error;

ncclResult_t fail(ncclResult_t rc, const std::string& why) {
  g_last_error = why;
  return rc;
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclFloat32: return 4;
    case ncclFloat64: return 8;
  }
  return 0;
}

// Runs `collective` now, or records it when `stream` is being captured; a recorded one that
// fails when the graph runs reports it through ncclCommGetAsyncError, as NCCL does.
template <class Collective>
ncclResult_t run_or_record(ncclComm_t comm, cudaStream_t stream, Collective collective) {
  if (auto* graph = dino::simt::capture_of(stream)) {
    graph->push_back([=] {
      const ncclResult_t rc = collective();
      if (rc != ncclSuccess) comm->async = rc;
    });
    return ncclSuccess;
  }
  return collective();
}

template <class T>
void premultiply(T* p, size_t n, int ranks) {
  // NCCL's average on floating types scales each rank's values by 1/nranks, then sums.
  const T f = T(1) / T(ranks);
  for (size_t i = 0; i < n; ++i) p[i] *= f;
}

}  // namespace

ncclResult_t ncclGetVersion(int* version) {
  *version = 22809;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::random_device rd;
  for (char& c : id->internal) c = char(rd());
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return fail(ncclInvalidArgument,
                "rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  auto* c = new ncclComm{rank, nranks, MPI_COMM_NULL};
  if (nranks > 1) {
    int initialized = 0, world_size = 0, world_rank = 0;
    MPI_Initialized(&initialized);
    if (!initialized) return fail(ncclInvalidUsage, "the stand-in needs MPI for several ranks");
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    if (world_size != nranks || world_rank != rank)
      return fail(ncclInvalidUsage,
                  "the stand-in's communicator spans MPI_COMM_WORLD in its order");
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    // Every rank must have been handed rank 0's id (the bootstrap under test).
    ncclUniqueId root = id;
    MPI_Bcast(root.internal, NCCL_UNIQUE_ID_BYTES, MPI_BYTE, 0, c->mpi);
    int same = std::memcmp(root.internal, id.internal, NCCL_UNIQUE_ID_BYTES) == 0, all = 0;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_LAND, c->mpi);
    if (!all) return fail(ncclInvalidUsage, "the ranks were given different unique ids");
  }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm->mpi != MPI_COMM_NULL) MPI_Comm_free(&comm->mpi);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclSuccess; }

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  *async_error = comm->async;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
  }
  return "unknown result code";
}

const char* ncclGetLastError(ncclComm_t) { return g_last_error.c_str(); }

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (type != ncclFloat32 && type != ncclFloat64)
    return fail(ncclInvalidArgument, "the stand-in reduces f32 and f64 only");
  if (op != ncclSum && op != ncclAvg)
    return fail(ncclInvalidArgument, "the stand-in sums and averages only");
  return run_or_record(comm, stream, [=] {
    if (sendbuff != recvbuff) std::memcpy(recvbuff, sendbuff, count * type_size(type));
    if (comm->size == 1) return ncclSuccess;
    if (op == ncclAvg) {
      if (type == ncclFloat32)
        premultiply(static_cast<float*>(recvbuff), count, comm->size);
      else
        premultiply(static_cast<double*>(recvbuff), count, comm->size);
    }
    if (MPI_Allreduce(MPI_IN_PLACE, recvbuff, int(count),
                      type == ncclFloat32 ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM,
                      comm->mpi) != MPI_SUCCESS)
      return fail(ncclSystemError, "MPI_Allreduce failed");
    return ncclSuccess;
  });
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  return run_or_record(comm, stream, [=] {
    if (comm->rank == root && sendbuff != recvbuff) std::memcpy(recvbuff, sendbuff, bytes);
    if (comm->size == 1) return ncclSuccess;
    if (MPI_Bcast(recvbuff, int(bytes), MPI_BYTE, root, comm->mpi) != MPI_SUCCESS)
      return fail(ncclSystemError, "MPI_Bcast failed");
    return ncclSuccess;
  });
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t type, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = sendcount * type_size(type);
  return run_or_record(comm, stream, [=] {
    if (comm->size == 1) {
      if (sendbuff != recvbuff) std::memmove(recvbuff, sendbuff, bytes);
      return ncclSuccess;
    }
    // NCCL allows the in-place form (sendbuff at this rank's slot of recvbuff); MPI needs it
    // said.
    const bool in_place = sendbuff == static_cast<char*>(recvbuff) + comm->rank * bytes;
    if (MPI_Allgather(in_place ? MPI_IN_PLACE : sendbuff, int(bytes), MPI_BYTE, recvbuff,
                      int(bytes), MPI_BYTE, comm->mpi) != MPI_SUCCESS)
      return fail(ncclSystemError, "MPI_Allgather failed");
    return ncclSuccess;
  });
}
