#pragma once
// Module: ordered, dotted parameter and buffer names ("blocks.3.attn.qkv.weight"), so a
// checkpoint is a plain name -> tensor map. Parameters are members of the derived class,
// registered by address, so loading can replace their contents in place.
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dino {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Tensor>> named_parameters(
      const std::string& prefix = "") const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  void train(bool on = true);
  bool is_training() const { return training_; }
  void zero_grad();
  // Moves every parameter and buffer (data only; gradients are dropped) that is not on `device`
  // yet; one already there is left as it is (same handle).
  void to(Device device);

  // Registration by address: the member outlives the module's use of the pointer.
  void register_parameter(const std::string& name, Tensor* t);
  void register_buffer(const std::string& name, Tensor* t);
  void register_module(const std::string& name, Module* m);

 private:
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace dino
