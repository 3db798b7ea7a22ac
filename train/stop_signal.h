#pragma once
// Ctrl-C (SIGINT) and SIGTERM during training. While a StopSignals is alive, the first such
// signal only asks the training loop to stop at the next step boundary, where it writes a
// checkpoint and returns; a second one ends the process at once, as without the handler. A
// signal the process ignores (a shell's background commands ignore SIGINT) stays ignored.
namespace dino {

class StopSignals {
 public:
  // install = false: no handler, and requested() is always 0 (library callers, tests).
  explicit StopSignals(bool install);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal received (SIGINT or SIGTERM), or 0.
  int requested() const;

 private:
  bool installed_;
};

}  // namespace dino
