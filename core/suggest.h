#pragma once
// "did you mean" for names a user typed: the candidate nearest by edit distance, when it is
// near enough to be a typo.
#include <string>
#include <vector>

namespace dino {

// "; did you mean 'train'?" or "" when no candidate is within a third of the word's length
// (at least 2 edits).
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace dino
