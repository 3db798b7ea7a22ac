// CUDA graphs: the context stream's work recorded once (stream capture) and replayed with one
// launch, and the memory arena that makes a replay find every buffer where the capture put it.
//
// Why an arena of our own rather than the driver's graph memory nodes: the tensors a captured
// step leaves behind (gradients, the loss, statistics) are read and written by host code
// between replays, and the arena keeps their addresses valid for the graph's whole life under
// our control. Its rules:
// - While capturing, alloc() serves from the arena (first fit over slabs of device memory;
//   cudaMalloc'd outside the stream, which relaxed capture permits), and a buffer freed while
//   capturing returns to it: the work is one stream, in capture order, so reuse is ordered as
//   it was when the step ran eagerly.
// - A buffer allocated before the capture and freed during it is freed once the capture ends
//   (a stream-ordered free cannot be captured).
// - After capture_end the arena is frozen: freeing one of its buffers only counts it; the graph
//   writes there on every replay. The slabs go back when the graph is destroyed and its last
//   buffer has been freed, in either order.
// - Uploads and read-backs inside a capture throw: the graph would keep the data of the capture
//   (or wait for nothing). A captured step takes its per-step values from device buffers the
//   host writes before each replay (core/drop_path_mask.h, the DINO loss's temperature).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr size_t kAlign = 256;                       // as cudaMalloc aligns
constexpr size_t kMinSlabBytes = size_t(256) << 20;  // a ViT-S step's arena is a few GiB

size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

}  // namespace

struct Arena {
  struct Slab {
    char* base = nullptr;
    size_t bytes = 0;
    std::map<size_t, size_t> free;  // offset -> bytes, coalesced
  };
  std::vector<Slab> slabs;
  std::unordered_map<void*, std::pair<size_t, size_t>> live;  // buffer -> (slab, bytes)
  bool frozen = false;                                        // the capture has ended
  bool retired = false;                                       // its graph is destroyed
  size_t reserved = 0;                                        // slab bytes
  size_t high_water = 0;  // the most bytes live at once while capturing
  size_t in_use = 0;

  void* take(size_t bytes) {
    const size_t need = round_up(bytes == 0 ? 1 : bytes);
    for (size_t s = 0; s < slabs.size(); ++s)
      for (auto it = slabs[s].free.begin(); it != slabs[s].free.end(); ++it) {
        if (it->second < need) continue;
        const size_t offset = it->first, left = it->second - need;
        slabs[s].free.erase(it);
        if (left) slabs[s].free[offset + need] = left;
        return hand_out(s, offset, need);
      }
    Slab slab;
    slab.bytes = std::max(need, kMinSlabBytes);
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&slab.base), slab.bytes));
    if (slab.bytes > need) slab.free[need] = slab.bytes - need;
    reserved += slab.bytes;
    slabs.push_back(std::move(slab));
    return hand_out(slabs.size() - 1, 0, need);
  }

  void* hand_out(size_t slab, size_t offset, size_t bytes) {
    void* p = slabs[slab].base + offset;
    live[p] = {slab, bytes};
    in_use += bytes;
    high_water = std::max(high_water, in_use);
    return p;
  }

  // Returns the buffer to its slab while capturing; afterwards only forgets it.
  void give_back(void* p) {
    const auto it = live.find(p);
    const auto [s, bytes] = it->second;
    live.erase(it);
    in_use -= bytes;
    if (frozen) return;
    auto& free = slabs[s].free;
    size_t offset = size_t(static_cast<char*>(p) - slabs[s].base), size = bytes;
    auto next = free.lower_bound(offset);
    if (next != free.end() && next->first == offset + size) {
      size += next->second;
      next = free.erase(next);
    }
    if (next != free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += size;
        return;
      }
    }
    free[offset] = size;
  }

  void release() {
    for (Slab& s : slabs) CUDA_CHECK(cudaFree(s.base));
    slabs.clear();
  }
};

namespace {

struct GraphState {
  std::mutex mutex;
  std::shared_ptr<Arena> recording;            // the capture in progress
  std::vector<std::shared_ptr<Arena>> arenas;  // every arena with slabs still held
  std::vector<void*> deferred_frees;           // pre-capture buffers freed while capturing
  std::atomic<bool> any{false};                // arenas is not empty (read without the lock)
};

GraphState& state() {
  static GraphState s;
  return s;
}

// Gives back the slabs of destroyed graphs whose buffers are all freed; not while a capture
// is in progress (cudaFree synchronises the device, which would end it), but when it ends.
void drop_released(GraphState& g) {
  if (g.recording) return;
  for (auto it = g.arenas.begin(); it != g.arenas.end();) {
    if ((*it)->retired && (*it)->live.empty()) {
      (*it)->release();
      it = g.arenas.erase(it);
    } else {
      ++it;
    }
  }
  g.any = !g.arenas.empty();
}

}  // namespace

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::shared_ptr<Arena> arena;
  size_t nodes = 0;
};

bool capturing() {
  GraphState& g = state();
  if (!g.any) return false;  // every upload asks: no lock while no graph exists
  std::lock_guard<std::mutex> lock(g.mutex);
  return g.recording != nullptr;
}

void* arena_alloc(size_t bytes) {
  GraphState& g = state();
  if (!g.any) return nullptr;
  std::lock_guard<std::mutex> lock(g.mutex);
  return g.recording ? g.recording->take(bytes) : nullptr;
}

bool arena_free(void* p) {
  GraphState& g = state();
  if (!g.any) return false;
  std::lock_guard<std::mutex> lock(g.mutex);
  for (const auto& a : g.arenas)
    if (a->live.count(p)) {
      a->give_back(p);
      drop_released(g);
      return true;
    }
  if (g.recording) {
    g.deferred_frees.push_back(p);
    return true;
  }
  return false;
}

void capture_begin() {
  Context& ctx = context();
  GraphState& g = state();
  {
    std::lock_guard<std::mutex> lock(g.mutex);
    DINO_CHECK(!g.recording, "[cuda graph] a capture is already in progress");
    g.recording = std::make_shared<Arena>();
    g.arenas.push_back(g.recording);
    g.any = true;
  }
  // Relaxed: the arena may cudaMalloc a slab mid-capture (not a stream operation).
  CUDA_CHECK(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeRelaxed));
}

namespace {

// Ends the capture in progress: the graph, or nullptr when the capture was invalidated.
cudaGraph_t end_capture(std::shared_ptr<Arena>* arena) {
  Context& ctx = context();
  cudaGraph_t graph = nullptr;
  const cudaError_t err = cudaStreamEndCapture(ctx.stream, &graph);
  if (err != cudaSuccess) cudaGetLastError();
  GraphState& g = state();
  std::vector<void*> frees;
  {
    std::lock_guard<std::mutex> lock(g.mutex);
    *arena = g.recording;
    g.recording.reset();
    (*arena)->frozen = true;
    frees.swap(g.deferred_frees);
    drop_released(g);
  }
  for (void* p : frees) free(p);
  return err == cudaSuccess ? graph : nullptr;
}

}  // namespace

void capture_abort() {
  std::shared_ptr<Arena> arena;
  if (cudaGraph_t graph = end_capture(&arena)) CUDA_CHECK(cudaGraphDestroy(graph));
  GraphState& g = state();
  std::lock_guard<std::mutex> lock(g.mutex);
  arena->retired = true;
  drop_released(g);
}

Graph* capture_end() {
  auto out = std::make_unique<Graph>();
  out->graph = end_capture(&out->arena);
  if (!out->graph) {
    GraphState& g = state();
    std::lock_guard<std::mutex> lock(g.mutex);
    out->arena->retired = true;
    drop_released(g);
    DINO_CHECK(false,
               "[cuda graph] the capture was invalidated: a call in the captured work is "
               "not allowed while capturing (a synchronisation, or a stream-ordered "
               "allocation on another path than the arena)");
  }
  CUDA_CHECK(cudaGraphGetNodes(out->graph, nullptr, &out->nodes));
  CUDA_CHECK(cudaGraphInstantiate(&out->exec, out->graph, 0));
  // The eager steps before the recording left their activations cached in the device's default
  // pool (its release threshold is unlimited: runtime.cu); from now on the arena holds them, so
  // what the pool no longer uses goes back to the device instead of doubling the footprint.
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, context().device));
  CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
  return out.release();
}

void graph_launch(Graph* graph) { CUDA_CHECK(cudaGraphLaunch(graph->exec, context().stream)); }

void graph_destroy(Graph* graph) {
  if (!graph) return;
  CUDA_CHECK(cudaGraphExecDestroy(graph->exec));
  CUDA_CHECK(cudaGraphDestroy(graph->graph));
  GraphState& g = state();
  {
    std::lock_guard<std::mutex> lock(g.mutex);
    graph->arena->retired = true;
    drop_released(g);
  }
  delete graph;
}

GraphSize graph_size(const Graph* graph) {
  return {graph->nodes, graph->arena->reserved, graph->arena->high_water};
}

}  // namespace dino::kernels::cuda
