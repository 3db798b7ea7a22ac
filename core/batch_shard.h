#pragma once
// Randomness inside a data-parallel step, drawn as one process would draw it for the whole
// batch. In a scope of BatchShardScope(rank, ranks), a per-sample draw over the rows of a
// tensor (drop_path's masks) makes the draws of every rank's rows and keeps this rank's: local
// row L is global row ranks * L + rank, the layout of the loader's shards (data/loader.h), so a
// run on any number of ranks draws the masks a single process draws, and every rank's
// generator stays in the same state. The default (no scope) is one rank: nothing changes.
namespace dino {

struct BatchShard {
  int rank = 0, ranks = 1;
};

// The shard of the innermost scope on this thread.
BatchShard current_batch_shard();

class BatchShardScope {
 public:
  BatchShardScope(int rank, int ranks);
  ~BatchShardScope();
  BatchShardScope(const BatchShardScope&) = delete;
  BatchShardScope& operator=(const BatchShardScope&) = delete;

 private:
  BatchShard previous_;
};

}  // namespace dino
