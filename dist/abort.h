#pragma once
// Stopping a whole multi-rank job from any rank and any thread: the failing rank prints its
// message with its rank, every backend aborts its communicators (ncclCommAbort), and the
// launcher is told to kill every other rank (MPI_Abort). Backends register what they need.
#include <functional>
#include <string>

namespace dino::dist {

// The rank that prefixes abort messages ("[rank 1 of 2]"); set when the world starts.
void set_abort_identity(int rank, int size);
std::string rank_prefix();  // "[rank 1 of 2] ", or "" in a world of one

// Runs at abort_job, last registered first. Returns an id for remove_abort_step.
int add_abort_step(std::function<void()> step);
void remove_abort_step(int id);

// Prints "dino: [rank r of n] message" on stderr, runs the abort steps once (a second caller,
// e.g. a watchdog racing the main thread, waits for the first) and exits with status 1 if no
// step ended the process. Never returns.
[[noreturn]] void abort_job(const std::string& message);

}  // namespace dino::dist
