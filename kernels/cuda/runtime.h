#pragma once
// The CUDA runtime as the (g++-compiled) core sees it: device discovery, stream-ordered
// memory, copies and a few device-side conversions. A plain C++ header with no CUDA
// includes; everything runs on one stream per device, owned by the lazily created context
// in kernels/cuda/context.h.
#include <cstddef>
#include <cstdint>
#include <string>

namespace dino::kernels::cuda {

// False on ANY error from cudaGetDeviceCount (a machine without a driver answers
// cudaErrorInsufficientDriver, not cudaErrorNoDevice) or when it reports 0 devices.
bool available();
// "NVIDIA H200 (sm_90, 132 SMs, 141 GB)" or "no CUDA device (<reason>)".
std::string device_description();
// The devices cudaGetDeviceCount reports, 0 on any error (as available()); set_device makes one
// the current device of the calling process's later work (cudaSetDevice).
int device_count();
void set_device(int index);

// Stream-ordered allocation from the device's default memory pool, whose release threshold
// is raised to UINT64_MAX once, so a steady-state training step never calls the driver.
// alloc(0) returns nullptr; free(nullptr) does nothing.
void* alloc(size_t bytes);
void free(void* p);
// A launcher's scratch, stream-ordered on `stream` (a cudaStream_t), from the graph arena while
// capturing, as alloc() (scratch_alloc(0) returns nullptr).
void* scratch_alloc(size_t bytes, void* stream);
void scratch_free(void* p, void* stream);
// Tests turn this on: every later alloc() fills its bytes with 0xFF (NaN in f32 and bf16), so
// an op that leaves an element of a fresh output unwritten shows it (ARCHITECTURE §6).
void set_poison_allocations(bool on);

// Copies on the context stream. copy_h2d stages the bytes in pinned memory and returns
// without waiting for the stream: the host buffer may be freed or reused at once, and the
// device sees the data in stream order. copy_d2h synchronises; copy_d2d does not.
void copy_h2d(void* dst, const void* src, size_t bytes);
void copy_d2h(void* dst, const void* src, size_t bytes);
void copy_d2d(void* dst, const void* src, size_t bytes);
void synchronize();
// The context's cudaStream_t, as void*.
void* stream();

// Overlapping transfers with the step. The copy stream is the context's second stream: a
// batch's upload runs there while the context stream computes the step before it, and events
// order the two (streams and events as void*: their cudaStream_t and cudaEvent_t). Pinned
// (page-locked) host memory is what a copy runs from, and lands in, without staging and
// without waiting. An event never recorded counts as complete.
void* copy_stream();
void* alloc_pinned(size_t bytes);
void free_pinned(void* p);
// timing: the event can be an end of event_elapsed_ms (otherwise created without timing,
// which costs less).
void* event_create(bool timing = false);
void event_destroy(void* event);
void event_record(void* event, void* stream);
// Later work on `stream` waits for the work queued before the event's last record.
void stream_wait_event(void* stream, void* event);
void event_synchronize(void* event);
// Milliseconds between the last records of two timing events; waits for `end`.
double event_elapsed_ms(void* start, void* end);
// Queued on `stream`, not waited for: the pinned host side must stay untouched until an event
// recorded on `stream` after the copy has completed.
void copy_h2d_async(void* dst, const void* pinned_src, size_t bytes, void* stream);
void copy_d2h_async(void* pinned_dst, const void* src, size_t bytes, void* stream);

// CUDA graphs (kernels/cuda/graph.cu; train/step_graph.h runs a training step this way).
// capture_begin() makes the context stream record instead of run: the work queued on it until
// capture_end() becomes a graph, which graph_launch() replays as one launch. While capturing,
// alloc() serves from an arena the graph owns (so every replay finds its buffers at the
// capture's addresses), free() of an arena buffer returns it for reuse, and free() of an older
// buffer waits for the capture's end; an upload, a read-back or a synchronisation throws.
// After the capture, freeing an arena buffer only counts it: its memory lives until the graph
// is destroyed and its last buffer freed. capture_abort() ends a failed capture, keeping nothing.
struct Graph;
struct GraphSize {
  size_t nodes = 0;        // kernels, copies and memsets recorded
  size_t arena_bytes = 0;  // device memory the arena holds
  size_t arena_peak = 0;   // the most of it live at once during the capture
};
bool capturing();
void capture_begin();
Graph* capture_end();
void capture_abort();
void graph_launch(Graph* graph);
void graph_destroy(Graph* graph);  // nullptr: nothing
GraphSize graph_size(const Graph* graph);

// Element-wise conversions on the device, n elements, on the context stream.
// f32 -> bf16 rounds to nearest even (as dino::bf16 does on the host).
void convert_f32_to_bf16(void* dst, const void* src, int64_t n);
void convert_bf16_to_f32(void* dst, const void* src, int64_t n);
void fill_f32(void* dst, float value, int64_t n);

}  // namespace dino::kernels::cuda
