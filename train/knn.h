#pragma once
// DINO's weighted k-NN evaluation (eval_knn.py): L2-normalised features, cosine similarity
// against the whole training split, the top k neighbours vote with weight exp(sim / T).
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "models/vit.h"
#include "train/config.h"

namespace dino {

struct KnnResult {
  double top1 = 0, top5 = 0;  // percent
  int64_t k = 20;
  double temperature = 0.07;
  int64_t n_train = 0, n_test = 0;
};

// Called with (done, total) while features are extracted.
using ProgressFn = std::function<void(int64_t, int64_t)>;

// Refused, with an error naming the images, when the model gives a NaN or an infinity: an
// accuracy computed from non-finite features would be meaningless (NaN votes count as ties).
// [CLS] after the final norm for every image of `ds` (eval_transform at the model's
// img_size), L2-normalised: (n, D) f32 on the CPU. The forward runs batched, without autograd,
// on the model's device (CUDA: bf16 features made f32 there, then copied to the host); the
// ranking (knn_classify) always runs on the CPU.
Tensor extract_features(const VisionTransformer& model, const data::Dataset& ds,
                        const data::Normalization& norm, int64_t batch, const ProgressFn& progress = {});
// Raw pixels in [0, 1] at the dataset's native size (datasets of mixed sizes: eval_transform
// to 64 x 64 without normalisation), flattened and L2-normalised (n, C*H*W).
Tensor raw_pixel_features(const data::Dataset& ds);
std::vector<int> labels_of(const data::Dataset& ds);

// Weighted k-NN of every test row against all train rows (features already L2-normalised and
// finite: non-finite ones are refused).
KnnResult knn_classify(const Tensor& train_features, const std::vector<int>& train_labels,
                       const Tensor& test_features, const std::vector<int>& test_labels,
                       int64_t num_classes, int64_t k, double temperature);

// The trained teacher beside two controls evaluated the same way: the same architecture at
// the student's initial weights (build_student of train/trainer.h) and raw pixels. The whole train split is the bank, the test split the queries.
struct KnnReport {
  KnnResult trained, random_init, raw_pixels;
  int64_t num_classes = 0;
  std::string dataset;  // the train split's describe()
  double seconds = 0;
};
struct KnnSettings {
  int64_t k = 20;
  double temperature = 0.07;
  int64_t batch = 256;  // images per forward pass
};
// data_spec empty: the recipe's data.dataset. Progress counts the images through either model.
KnnReport knn_report(const VisionTransformer& teacher, const Recipe& recipe, int64_t in_chans,
                     const std::string& data_spec, const KnnSettings& settings,
                     const ProgressFn& progress = {});
nlohmann::json to_json(const KnnResult& r);  // {"top1", "top5"}
// {"trained", "random_init", "raw_pixels", "k", "temperature", "n_train", "n_test",
//  "num_classes", "dataset", "seconds"}
nlohmann::json to_json(const KnnReport& r);

}  // namespace dino
