#pragma once
// One exception type for every error a user can cause. Messages start with the op or
// the file in brackets, e.g. "[layer_norm] weight has 383 elements, expected 384".
#include <sstream>
#include <stdexcept>
#include <string>

namespace dino {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void format_into(std::ostringstream&) {}
template <class T, class... Rest>
void format_into(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  format_into(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one message.
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::format_into(os, args...);
  return os.str();
}

}  // namespace dino

// DINO_CHECK(cond, "[op] ", details...) throws dino::Error when cond is false.
#define DINO_CHECK(cond, ...)                                       \
  do {                                                              \
    if (!(cond)) throw ::dino::Error(::dino::str_cat(__VA_ARGS__)); \
  } while (0)
