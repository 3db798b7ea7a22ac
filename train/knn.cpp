#include "train/knn.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "data/loader.h"
#include "dist/communicator.h"
#include "kernels/cpu/kernels.h"

namespace dino {

namespace {

// Images of mixed sizes have no native size; raw pixels then need one common size.
constexpr int kRawPixelFallbackSize = 64;
// Test rows per similarity block: 256 x 60k floats is 61 MB, small next to the bank.
constexpr int64_t kQueryChunk = 256;

void l2_normalize_rows(float* x, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += double(row[c]) * row[c];
    // The eps of F.normalize: an all-zero row stays zero instead of becoming NaN.
    const float inv = float(1.0 / std::max(std::sqrt(ss), 1e-12));
    for (int64_t c = 0; c < cols; ++c) row[c] *= inv;
  }
}

// The first row of (rows, cols) that holds a NaN or an infinity, or -1.
int64_t first_non_finite_row(const float* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (!std::isfinite(x[r * cols + c])) return r;
  return -1;
}

void check_features(const Tensor& t, const char* what) {
  DINO_CHECK(t.defined() && t.dim() == 2 && t.dtype() == DType::f32 && t.device() == Device::cpu,
             "[knn] ", what, " features must be (n, D) f32 on the CPU, got ",
             t.defined() ? t.str() : "an undefined tensor");
  const int64_t bad = first_non_finite_row(t.data<float>(), t.size(0), t.size(1));
  DINO_CHECK(bad < 0, "[knn] ", what, " feature row ", bad,
             " is not finite; no accuracy is "
             "computed from NaN or infinite features");
}

void check_labels(const std::vector<int>& labels, int64_t rows, int64_t num_classes,
                  const char* what) {
  DINO_CHECK(int64_t(labels.size()) == rows, "[knn] ", labels.size(), " ", what, " labels for ",
             rows, " feature rows");
  for (size_t i = 0; i < labels.size(); ++i)
    DINO_CHECK(labels[i] >= 0 && labels[i] < num_classes, "[knn] ", what, " label ", labels[i],
               " at row ", i, " is outside [0, ", num_classes, ")");
}

// Images [begin, end) of another dataset: one rank's share of the k-NN feature extraction.
class DatasetRange : public data::Dataset {
 public:
  DatasetRange(const data::Dataset& ds, size_t begin, size_t end)
      : ds_(ds), begin_(begin), end_(end) {}
  size_t size() const override { return end_ - begin_; }
  data::Image get(size_t i) const override { return ds_.get(begin_ + i); }
  void load(size_t i, data::SourceImage& out, const data::ReductionPlan& plan) const override {
    ds_.load(begin_ + i, out, plan);
  }
  int label(size_t i) const override { return ds_.label(begin_ + i); }
  int num_classes() const override { return ds_.num_classes(); }
  int channels() const override { return ds_.channels(); }
  int native_size() const override { return ds_.native_size(); }
  std::string describe() const override { return ds_.describe(); }
  std::string path(size_t i) const override { return ds_.path(begin_ + i); }
  std::string class_name(int label) const override { return ds_.class_name(label); }

 private:
  const data::Dataset& ds_;
  size_t begin_, end_;
};

}  // namespace

Tensor extract_features(const VisionTransformer& model, const data::Dataset& ds,
                        const data::Normalization& norm, int64_t batch, const ProgressFn& progress,
                        dist::Communicator* comm) {
  EmbedOptions options;
  options.batch = batch;
  options.l2_normalize = true;
  options.progress = progress;
  const int ranks = comm ? comm->size() : 1;
  if (ranks == 1) return embed(model, ds, norm, options).cls;
  // Each rank a whole number of batches, so every batch is the one a single process makes.
  DINO_CHECK(batch > 0, "[knn] batch size must be positive, got ", batch);
  const int64_t n = int64_t(ds.size()), batches = (n + batch - 1) / batch;
  const int64_t share = (batches + ranks - 1) / ranks * batch;
  const int64_t begin = std::min(n, comm->rank() * share), end = std::min(n, begin + share);
  if (progress)
    options.progress = [&progress, ranks, n](int64_t done, int64_t) {
      progress(std::min(n, done * ranks), n);  // every rank goes at about this pace
    };
  const Tensor mine = embed(model, DatasetRange(ds, size_t(begin), size_t(end)), norm, options).cls;
  const int64_t D = model.config().embed_dim;
  Tensor padded = Tensor::zeros({share, D});
  if (end > begin) std::memcpy(padded.data<float>(), mine.data<float>(), mine.nbytes());
  Tensor all = Tensor::empty({share * ranks, D});
  comm->all_gather(all, padded);
  return all.narrow(0, n);
}

Tensor raw_pixel_features(const data::Dataset& ds) {
  const int C = ds.channels();
  const int side = ds.native_size() > 0 ? ds.native_size() : kRawPixelFallbackSize;
  const data::Normalization identity{std::vector<float>(size_t(C), 0.f),
                                     std::vector<float>(size_t(C), 1.f)};
  const int64_t n = int64_t(ds.size()), dim = int64_t(C) * side * side;
  Tensor out = Tensor::empty({n, dim});
  constexpr int64_t kChunk = 4096;  // bounds the staging copy eval_batch returns
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t end = std::min(n, begin + kChunk);
    const std::vector<float> px = data::eval_batch(ds, size_t(begin), size_t(end), side, identity);
    std::copy(px.begin(), px.end(), out.data<float>() + begin * dim);
  }
  l2_normalize_rows(out.data<float>(), n, dim);
  return out;
}

std::vector<int> labels_of(const data::Dataset& ds) {
  std::vector<int> labels(ds.size());
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = ds.label(i);
  return labels;
}

KnnResult knn_classify(const Tensor& train_features, const std::vector<int>& train_labels,
                       const Tensor& test_features, const std::vector<int>& test_labels,
                       int64_t num_classes, int64_t k, double temperature) {
  check_features(train_features, "train");
  check_features(test_features, "test");
  const int64_t n_train = train_features.size(0), n_test = test_features.size(0);
  const int64_t D = train_features.size(1);
  DINO_CHECK(test_features.size(1) == D, "[knn] test features have ", test_features.size(1),
             " dims, train features ", D);
  DINO_CHECK(n_train > 0, "[knn] the train bank is empty");
  DINO_CHECK(num_classes > 0, "[knn] k-NN needs labelled data (num_classes is ", num_classes, ")");
  DINO_CHECK(k > 0, "[knn] k must be positive, got ", k);
  DINO_CHECK(temperature > 0, "[knn] temperature must be positive, got ", temperature);
  check_labels(train_labels, n_train, num_classes, "train");
  check_labels(test_labels, n_test, num_classes, "test");

  KnnResult result;
  result.k = k;
  result.temperature = temperature;
  result.n_train = n_train;
  result.n_test = n_test;
  if (n_test == 0) return result;

  const int64_t kk = std::min(k, n_train);
  const int64_t top_n = std::min<int64_t>(5, num_classes);
  const float* train = train_features.data<float>();
  const float* test = test_features.data<float>();
  std::vector<float> sim(size_t(std::min(kQueryChunk, n_test) * n_train));
  int64_t correct1 = 0, correct5 = 0;

  for (int64_t q0 = 0; q0 < n_test; q0 += kQueryChunk) {
    const int64_t rows = std::min(kQueryChunk, n_test - q0);
    kernels::cpu::gemm<float>(sim.data(), test + q0 * D, train, rows, n_train, D, false, true, 1.f,
                              0.f);
#pragma omp parallel for schedule(static) reduction(+ : correct1, correct5)
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = sim.data() + r * n_train;
      // Top kk by one scan, kept sorted: higher similarity first, then the lower bank index,
      // so equal similarities always pick the same neighbours.
      std::vector<int64_t> idx;
      idx.reserve(size_t(kk) + 1);
      for (int64_t j = 0; j < n_train; ++j) {
        if (int64_t(idx.size()) == kk && !(s[j] > s[idx.back()])) continue;
        auto pos = idx.end();
        while (pos != idx.begin() && s[*(pos - 1)] < s[j]) --pos;
        idx.insert(pos, j);
        if (int64_t(idx.size()) > kk) idx.pop_back();
      }

      // exp(sim / T) scaled by exp(-max / T), which leaves the ranking as it is but keeps a
      // small T from overflowing.
      std::vector<double> votes(size_t(num_classes), 0.0);
      const double top = s[idx[0]];
      for (int64_t j = 0; j < kk; ++j)
        votes[size_t(train_labels[size_t(idx[j])])] +=
            std::exp((double(s[idx[j]]) - top) / temperature);

      // Rank of the true class: classes with more votes, or as many and a lower index, come first.
      const int truth = test_labels[size_t(q0 + r)];
      int64_t rank = 0;
      for (int64_t c = 0; c < num_classes; ++c)
        if (votes[c] > votes[truth] || (votes[c] == votes[truth] && c < truth)) ++rank;
      correct1 += rank == 0;
      correct5 += rank < top_n;
    }
  }
  result.top1 = 100.0 * double(correct1) / double(n_test);
  result.top5 = 100.0 * double(correct5) / double(n_test);
  return result;
}

KnnReport knn_report(const VisionTransformer& trained, const VisionTransformer& random_init,
                     const std::string& spec, const KnnSettings& settings,
                     const ProgressFn& progress, dist::Communicator* comm) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t k = settings.k, batch = settings.batch;
  const double temperature = settings.temperature;
  const auto train = data::open_dataset(spec, data::Split::train);
  const auto test = data::open_dataset(spec, data::Split::test);
  DINO_CHECK(train->num_classes() > 0, "[knn] ", train->describe(),
             " has no labels; k-NN evaluation needs a labelled dataset");
  const int64_t num_classes = train->num_classes();
  const std::vector<int> train_labels = labels_of(*train), test_labels = labels_of(*test);
  const data::Normalization norm = data::default_normalization(train->channels());

  const int64_t n_train = int64_t(train->size()), n_test = int64_t(test->size());
  const int64_t total = 2 * (n_train + n_test);
  KnnReport report;
  // Several ranks share the feature extraction; rank 0 alone votes and computes the controls.
  const bool votes = !comm || comm->rank() == 0;
  auto eval_model = [&](const VisionTransformer& model, int64_t offset) {
    auto step = [&](int64_t base) -> ProgressFn {
      if (!progress) return {};
      return [&progress, base, total](int64_t done, int64_t) { progress(base + done, total); };
    };
    Tensor ftr = extract_features(model, *train, norm, batch, step(offset), comm);
    Tensor fte = extract_features(model, *test, norm, batch, step(offset + n_train), comm);
    const KnnResult r =
        votes ? knn_classify(ftr, train_labels, fte, test_labels, num_classes, k, temperature)
              : KnnResult{};
    if (offset == 0) {
      report.train_features = ftr;
      report.test_features = fte;
    }
    return r;
  };

  report.num_classes = num_classes;
  report.dataset = train->describe();
  report.train_labels = train_labels;
  report.test_labels = test_labels;
  report.trained = eval_model(trained, 0);
  report.random_init = eval_model(random_init, n_train + n_test);
  if (votes)
    report.raw_pixels =
        knn_classify(raw_pixel_features(*train), train_labels, raw_pixel_features(*test),
                     test_labels, num_classes, k, temperature);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

nlohmann::json to_json(const KnnResult& r) { return {{"top1", r.top1}, {"top5", r.top5}}; }

nlohmann::json to_json(const KnnReport& r) {
  return {{"trained", to_json(r.trained)},
          {"random_init", to_json(r.random_init)},
          {"raw_pixels", to_json(r.raw_pixels)},
          {"k", r.trained.k},
          {"temperature", r.trained.temperature},
          {"n_train", r.trained.n_train},
          {"n_test", r.trained.n_test},
          {"num_classes", r.num_classes},
          {"dataset", r.dataset},
          {"seconds", r.seconds}};
}

}  // namespace dino
