#pragma once
// `dino bench allreduce`: the gradient all-reduce of data-parallel training, timed at the
// buckets the trainer reduces (tools/bench_allreduce.cpp).
#include <CLI/CLI.hpp>

namespace dino::tools {

void add_allreduce_bench(CLI::App& bench);

}  // namespace dino::tools
