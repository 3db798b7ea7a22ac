#pragma once
// The op codes shared by the op front ends (core/ops.h), the backends (core/backend.h) and the
// kernels (kernels/cuda/kernels.h): one set, so no layer translates another's.

namespace dino {

enum class BinaryOp : int { add, sub, mul, div };
// scale: s * x; add_scalar: x + s; exp, log, sqrt; gelu: the exact erf form.
enum class UnaryOp : int { scale, add_scalar, exp, log, sqrt, gelu };
enum class RowReduce : int { sum, max };

inline const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
  }
  return "?";
}

inline const char* op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::scale: return "scale";
    case UnaryOp::add_scalar: return "add_scalar";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::gelu: return "gelu";
  }
  return "?";
}

}  // namespace dino
