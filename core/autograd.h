#pragma once
// The autograd tape. Each differentiable op records one Node holding its inputs and a
// backward function (which captures the tensors the op saved). backward() walks the nodes
// reachable from the output in reverse topological order, sums the gradients arriving at
// each tensor, and hands leaves their .grad. Buffers are released after the walk unless
// retain_graph is set; a second walk through released nodes is an error.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dino {

struct Node {
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  std::string op;              // "layer_norm", used in error messages
  std::vector<Tensor> inputs;  // one gradient slot per input (undefined: no gradient)
  BackwardFn backward;         // returns one gradient per input (undefined where none)
  bool released = false;
};

// True while operations should record nodes (the default).
bool grad_mode_enabled();

// Turns recording off in a scope (teacher forward, evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any input requires a gradient.
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `node` as the creator of `output` (marks it requiring grad). Saved tensors in the
// backward closure must be detached handles (Tensor::detach) so no reference cycle forms
// between an output and its own node.
void record(Tensor& output, const std::string& op, std::vector<Tensor> inputs,
            Node::BackwardFn backward);

// Adds `g` into `t`'s .grad (creating it on first use). Not recorded.
void accumulate_grad(const Tensor& t, const Tensor& g);

void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph);

// Called by a backward walk as soon as `leaf`'s .grad is final for that walk: every node of
// the walk that passes a gradient to the leaf has run (the walk counts them first). It runs
// on the walking thread under NoGradGuard, once per walk that reaches the leaf, in the order
// the leaves complete; the data-parallel gradient reducer (dist/reducer.h) starts a bucket's
// all-reduce from it while the rest of the backward is still being issued, as DDP does with
// PyTorch's post-accumulate-grad hooks. Leaves only (a parameter, not an op's output).
using GradReadyHook = std::function<void(const Tensor& leaf)>;
void add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook);
void clear_grad_ready_hooks(const Tensor& leaf);

}  // namespace dino
