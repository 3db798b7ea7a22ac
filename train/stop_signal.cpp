#include "train/stop_signal.h"

#include <csignal>

#include "core/error.h"

namespace dino {

namespace {

volatile std::sig_atomic_t g_requested = 0;
struct sigaction g_previous_int, g_previous_term;

void on_signal(int sig) { g_requested = sig; }

// Installs the handler for `sig` unless the signal is ignored (as a shell ignores SIGINT for
// the commands it starts in the background): those must keep ignoring it.
void install(int sig, struct sigaction* previous) {
  DINO_CHECK(sigaction(sig, nullptr, previous) == 0, "[train] cannot read the action of signal ",
             sig);
  if (previous->sa_handler == SIG_IGN) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESETHAND: the handler runs once, so a second Ctrl-C gets the default action.
  sa.sa_flags = SA_RESETHAND;
  DINO_CHECK(sigaction(sig, &sa, nullptr) == 0, "[train] cannot handle signal ", sig);
}

}  // namespace

StopSignals::StopSignals(bool install_handlers) : installed_(install_handlers) {
  if (!installed_) return;
  g_requested = 0;
  install(SIGINT, &g_previous_int);
  install(SIGTERM, &g_previous_term);
}

StopSignals::~StopSignals() {
  if (!installed_) return;
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int StopSignals::requested() const { return installed_ ? int(g_requested) : 0; }

}  // namespace dino
