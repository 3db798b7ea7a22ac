// The CPU backend's streams, events and pinned memory (core/backend.h): everything runs as it is
// called, so a queued copy has landed on return, an event is complete once recorded and holds
// the time of its record, and the host is the one device.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"

using namespace dino;

TEST_CASE("cpu backend: asynchronous copies through pinned memory land on return", "[backend]") {
  const Backend& b = cpu_backend();
  CHECK(b.alloc_pinned(0) == nullptr);
  b.free_pinned(nullptr);
  Rng rng(std::random_device{}());
  const size_t n = 1000 + rng.below(100);  // a fresh size and fresh values each run
  std::vector<float> src(n), back(n, std::nanf(""));
  for (float& x : src) x = float(rng.normal());
  auto* pinned = static_cast<float*>(b.alloc_pinned(n * sizeof(float)));
  REQUIRE(pinned);
  CHECK(reinterpret_cast<uintptr_t>(pinned) % 64 == 0);
  std::memcpy(pinned, src.data(), n * sizeof(float));
  void* device = b.alloc(n * sizeof(float));
  b.copy_to_device_async(device, pinned, n * sizeof(float), Queue::copy);
  std::memset(pinned, 0xFF, n * sizeof(float));  // reused at once: the copy has landed
  b.copy_to_host_async(back.data(), device, n * sizeof(float), Queue::compute);
  CHECK(back == src);
  b.free(device, n * sizeof(float));
  b.free_pinned(pinned);
}

TEST_CASE("cpu backend: an event completes when recorded and times the host", "[backend]") {
  const Backend& b = cpu_backend();
  DeviceEvent* start = b.event_create(true);
  DeviceEvent* end = b.event_create(true);
  b.event_synchronize(start);  // never recorded: complete
  b.event_record(start, Queue::compute);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  b.event_record(end, Queue::copy);
  b.queue_wait(Queue::copy, end);
  b.event_synchronize(end);
  const double ms = b.elapsed_ms(start, end);
  CHECK(ms >= 20);
  CHECK(ms < 2000);
  CHECK(b.elapsed_ms(end, start) == -ms);
  b.event_destroy(start);
  b.event_destroy(end);
  b.event_destroy(nullptr);
}

TEST_CASE("cpu backend: one device, and no augmentation kernel", "[backend]") {
  const Backend& b = cpu_backend();
  CHECK(b.device_count() == 1);
  b.select_device(0);
  CHECK_THROWS_WITH(b.select_device(1), Catch::StartsWith("[select_device]"));
  const Tensor out = Tensor::zeros({2, 3, 4, 4});
  CHECK_THROWS_WITH(b.augment_views(out, nullptr, nullptr, nullptr, 2, 1, 0, 4, nullptr, nullptr),
                    Catch::StartsWith("[augment_views]") && Catch::Contains("data.augment=cpu"));
}
