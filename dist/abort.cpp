#include "dist/abort.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"

namespace dino::dist {

namespace {

std::mutex g_mutex;
int g_rank = 0, g_size = 1;
int g_next_id = 0;
std::vector<std::pair<int, std::function<void()>>> g_steps;
bool g_aborting = false;

}  // namespace

void set_abort_identity(int rank, int size) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_rank = rank;
  g_size = size;
}

std::string rank_prefix() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_size > 1 ? str_cat("[rank ", g_rank, " of ", g_size, "] ") : std::string();
}

int add_abort_step(std::function<void()> step) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_steps.push_back({g_next_id, std::move(step)});
  return g_next_id++;
}

void remove_abort_step(int id) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto it = g_steps.begin(); it != g_steps.end(); ++it)
    if (it->first == id) {
      g_steps.erase(it);
      return;
    }
}

void abort_job(const std::string& message) {
  std::vector<std::pair<int, std::function<void()>>> steps;
  {
    std::unique_lock<std::mutex> lock(g_mutex);
    if (g_aborting) {  // another thread is already stopping the job; it will end the process
      lock.unlock();
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    g_aborting = true;
    steps = g_steps;
  }
  std::fprintf(stderr, "dino: %s%s\n", rank_prefix().c_str(), message.c_str());
  std::fflush(stderr);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) it->second();
  std::_Exit(1);
}

}  // namespace dino::dist
