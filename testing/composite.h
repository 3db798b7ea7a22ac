#pragma once
// Composite forms of the fused ops, built from core's primitive ops only (composite.cpp): slow,
// many intermediates, obviously right. tests/test_fused.cpp holds each fused op equal to its
// composite form, values and gradients.
#include <cstdint>

#include "core/ops.h"

namespace dino::composite {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
AddNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight,
                       const Tensor& bias, double eps);
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
Tensor attention(const Tensor& qkv, int64_t heads);
Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t);

}  // namespace dino::composite
