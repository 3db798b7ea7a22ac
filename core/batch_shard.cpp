#include "core/batch_shard.h"

#include "core/error.h"

namespace dino {

namespace {
thread_local BatchShard g_shard;
}

BatchShard current_batch_shard() { return g_shard; }

BatchShardScope::BatchShardScope(int rank, int ranks) : previous_(g_shard) {
  DINO_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "[batch_shard] rank ", rank, " of ", ranks);
  g_shard = {rank, ranks};
}

BatchShardScope::~BatchShardScope() { g_shard = previous_; }

}  // namespace dino
