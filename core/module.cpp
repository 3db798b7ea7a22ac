#include "core/module.h"

namespace dino {

void Module::register_parameter(const std::string& name, Tensor* t) {
  params_.push_back({name, t});
}
void Module::register_buffer(const std::string& name, Tensor* t) { buffers_.push_back({name, t}); }
void Module::register_module(const std::string& name, Module* m) { children_.push_back({name, m}); }

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : params_) out.push_back({prefix + name, *t});
  for (const auto& [name, m] : children_) {
    auto sub = m->named_parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : buffers_) out.push_back({prefix + name, *t});
  for (const auto& [name, m] : children_) {
    auto sub = m->named_buffers(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, m] : children_) m->train(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

void Module::to(Device device) {
  // A tensor already there keeps its handle: an optimizer built over these parameters holds the
  // same handles (gradients, bf16 copies), and a new one would silently detach it from them.
  for (auto& [name, t] : params_) {
    if (!t->defined() || t->device() == device) continue;
    const bool rg = t->requires_grad();
    *t = t->to(device).detach();
    t->set_requires_grad(rg);
  }
  for (auto& [name, t] : buffers_)
    if (t->defined() && t->device() != device) *t = t->to(device).detach();
  for (auto& [name, m] : children_) m->to(device);
}

}  // namespace dino
