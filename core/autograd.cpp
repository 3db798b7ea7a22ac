#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace dino {

namespace {
thread_local bool g_grad_mode = true;
}

bool grad_mode_enabled() { return g_grad_mode; }

NoGradGuard::NoGradGuard() : previous_(g_grad_mode) { g_grad_mode = false; }
NoGradGuard::~NoGradGuard() { g_grad_mode = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_mode) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

void record(Tensor& output, const std::string& op, std::vector<Tensor> inputs,
            Node::BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  output.impl()->requires_grad = true;
  output.set_grad_fn(std::move(node));
}

struct GradHooks {
  std::vector<GradReadyHook> fns;
};

void add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook) {
  DINO_CHECK(leaf.defined() && !leaf.grad_fn(),
             "[backward] a grad-ready hook goes on a leaf "
             "tensor (a parameter), not on an op's output");
  std::shared_ptr<GradHooks>& hooks = leaf.impl()->grad_hooks;
  if (!hooks) hooks = std::make_shared<GradHooks>();
  hooks->fns.push_back(std::move(hook));
}

void clear_grad_ready_hooks(const Tensor& leaf) {
  if (leaf.defined()) leaf.impl()->grad_hooks.reset();
}

void accumulate_grad(const Tensor& t, const Tensor& g) {
  DINO_CHECK(g.shape() == t.shape(), "[backward] gradient ", shape_str(g.shape()),
             " does not match tensor ", shape_str(t.shape()));
  Tensor& slot = t.impl()->grad;
  // Own the first gradient: backward functions may hand the same tensor to several inputs,
  // and optimizers and clipping modify .grad in place.
  slot = slot.defined() ? add(slot, g) : g.clone();
}

namespace {

// On CUDA a gradient has its tensor's dtype (ARCHITECTURE §3: f32 master weights and residual
// stream, bf16 activations), so gradients arriving in the other float dtype are cast on the
// device; accumulation (add) then sees equal dtypes. CPU gradients pass untouched.
Tensor cuda_grad_in_dtype(const Tensor& g, const Tensor& t) {
  if (g.device() != Device::cuda || g.dtype() == t.dtype()) return g;
  return g.to(t.dtype());
}

// Nodes reachable from root, ordered so every node comes before the nodes of its inputs.
std::vector<Node*> reverse_topological(Node* root) {
  std::vector<Node*> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<Node*, size_t>> stack{{root, 0}};
  visited.insert(root);
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      Node* child = in.defined() ? in.grad_fn().get() : nullptr;
      if (child && visited.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  return {order.rbegin(), order.rend()};
}

bool has_grad_ready_hooks(const Tensor& t) {
  return t.defined() && !t.grad_fn() && t.impl()->grad_hooks && !t.impl()->grad_hooks->fns.empty();
}

void call_grad_ready_hooks(const Tensor& leaf) {
  const std::shared_ptr<GradHooks> hooks = leaf.impl()->grad_hooks;  // a hook may clear them
  for (const GradReadyHook& fn : hooks->fns) fn(leaf);
}

// The hooked leaves of a walk, each with the number of its edges from the walk's nodes that
// have not passed their gradient (or their lack of one) yet.
class GradReadyCounter {
 public:
  explicit GradReadyCounter(const std::vector<Node*>& order) {
    for (Node* node : order)
      for (const Tensor& in : node->inputs)
        if (has_grad_ready_hooks(in)) {
          Leaf& l = leaves_[in.impl()];
          l.tensor = in;
          ++l.edges;
        }
  }
  // One edge into `in` is done; `delivered`: it passed a gradient.
  void edge_done(const Tensor& in, bool delivered) {
    if (leaves_.empty() || !in.defined()) return;
    auto it = leaves_.find(in.impl());
    if (it == leaves_.end()) return;
    Leaf& l = it->second;
    l.got |= delivered;
    if (--l.edges == 0 && l.got) call_grad_ready_hooks(l.tensor);
  }

 private:
  struct Leaf {
    Tensor tensor;
    int edges = 0;
    bool got = false;
  };
  std::unordered_map<TensorImpl*, Leaf> leaves_;
};

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  DINO_CHECK(root.requires_grad(),
             "[backward] the tensor does not require grad: no op that "
             "produced it had an input requiring grad (or it was computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    DINO_CHECK(root.numel() == 1,
               "[backward] an implicit gradient needs a one-element output, "
               "got ",
               shape_str(root.shape()));
    seed = Tensor::full(root.shape(), 1.0, root.dtype(), root.device());
  }
  DINO_CHECK(seed.shape() == root.shape(), "[backward] gradient ", shape_str(seed.shape()),
             " does not match output ", shape_str(root.shape()));
  seed = cuda_grad_in_dtype(seed, root);
  NoGradGuard no_grad;
  if (!root.grad_fn()) {
    accumulate_grad(root, seed);
    if (has_grad_ready_hooks(root)) call_grad_ready_hooks(root);
    return;
  }
  std::unordered_map<Node*, Tensor> pending{{root.grad_fn().get(), seed}};
  const std::vector<Node*> order = reverse_topological(root.grad_fn().get());
  GradReadyCounter ready(order);
  for (Node* node : order) {
    auto it = pending.find(node);
    if (it == pending.end()) {  // no gradient reached this node
      for (const Tensor& in : node->inputs) ready.edge_done(in, false);
      continue;
    }
    Tensor g = std::move(it->second);
    pending.erase(it);
    DINO_CHECK(!node->released, "[backward] second backward through '", node->op,
               "': its saved buffers were freed by the first; pass retain_graph = true to it");
    std::vector<Tensor> grads = node->backward(g);
    DINO_CHECK(grads.size() == node->inputs.size(), "[backward] '", node->op, "' returned ",
               grads.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor& in = node->inputs[i];
      const bool delivers = grads[i].defined() && in.requires_grad();
      if (!delivers) {
        ready.edge_done(in, false);
        continue;
      }
      DINO_CHECK(grads[i].shape() == in.shape(), "[backward] '", node->op, "' gave a gradient ",
                 shape_str(grads[i].shape()), " for input ", i, " of shape ",
                 shape_str(in.shape()));
      grads[i] = cuda_grad_in_dtype(grads[i], in);
      if (Node* child = in.grad_fn().get()) {
        Tensor& slot = pending[child];
        slot = slot.defined() ? add(slot, grads[i]) : grads[i];
      } else {
        accumulate_grad(in, grads[i]);
        ready.edge_done(in, true);
      }
    }
    if (!retain_graph) {
      node->backward = nullptr;
      node->released = true;
    }
  }
}

}  // namespace dino
