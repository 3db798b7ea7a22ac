#pragma once
// Randomness inside a data-parallel step, as one process would draw it for the whole batch. In a
// scope of BatchShardScope(rank, ranks), local row L of a tensor is global row ranks * L + rank,
// the layout of the loader's shards (data/loader.h), and a per-sample draw (drop_path's masks,
// core/drop_path_mask.h) is keyed by the global row, so a run on any number of ranks draws the
// masks a single process draws. The default (no scope) is one rank: nothing changes.
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
