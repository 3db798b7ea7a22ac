#pragma once
// DINO's weighted k-NN evaluation (eval_knn.py): L2-normalised features, cosine similarity
// against the whole training split, the top k neighbours vote with weight exp(sim / T).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "models/vit.h"
#include "train/embed.h"

namespace dino {

namespace dist {
class Communicator;
}

struct KnnResult {
  double top1 = 0, top5 = 0;  // percent
  int64_t k = 20;
  double temperature = 0.07;
  int64_t n_train = 0, n_test = 0;
};

// [CLS] after the final norm for every image of `ds` (eval_transform at the model's
// img_size), L2-normalised: (n, D) f32 on the CPU (embed() of train/embed.h); the ranking
// (knn_classify) always runs on the CPU. Refused, with an error naming the image, when the
// model gives a NaN or an infinity: an accuracy computed from non-finite features would be
// meaningless (NaN votes count as ties).
// With a host communicator of several ranks, each rank extracts its share (whole batches,
// each the batch one process makes) and every rank receives all the rows (all-gather): the
// features one process extracts, bit for bit.
Tensor extract_features(const VisionTransformer& model, const data::Dataset& ds,
                        const data::Normalization& norm, int64_t batch,
                        const ProgressFn& progress = {}, dist::Communicator* comm = nullptr);
// Raw pixels in [0, 1] at the dataset's native size (datasets of mixed sizes: eval_transform
// to 64 x 64 without normalisation), flattened and L2-normalised (n, C*H*W).
Tensor raw_pixel_features(const data::Dataset& ds);
std::vector<int> labels_of(const data::Dataset& ds);

// Weighted k-NN of every test row against all train rows (features already L2-normalised and
// finite: non-finite ones are refused).
KnnResult knn_classify(const Tensor& train_features, const std::vector<int>& train_labels,
                       const Tensor& test_features, const std::vector<int>& test_labels,
                       int64_t num_classes, int64_t k, double temperature);

// The trained model beside two controls evaluated the same way: the same architecture at its
// initial weights (for a training run: the student as build_student of train/trainer.h
// makes it) and raw pixels. The whole train split is the bank, the test split the queries.
struct KnnReport {
  KnnResult trained, random_init, raw_pixels;
  int64_t num_classes = 0;
  std::string dataset;  // the train split's describe()
  double seconds = 0;
  // The trained model's features and the labels, as eval_knn.py's --dump_features saves them.
  Tensor train_features, test_features;
  std::vector<int> train_labels, test_labels;
};
struct KnnSettings {
  int64_t k = 20;
  double temperature = 0.07;
  int64_t batch = 256;  // images per forward pass
};
// Progress counts the images through either model. `random_init` must be on the device
// `trained` is on. `comm`: the ranks of a data-parallel job share the feature extraction
// (extract_features); rank 0 alone votes and computes the raw-pixel control, and its report
// equals one process's (the other ranks' hold the features and no accuracies).
KnnReport knn_report(const VisionTransformer& trained, const VisionTransformer& random_init,
                     const std::string& data_spec, const KnnSettings& settings,
                     const ProgressFn& progress = {}, dist::Communicator* comm = nullptr);
nlohmann::json to_json(const KnnResult& r);  // {"top1", "top5"}
// {"trained", "random_init", "raw_pixels", "k", "temperature", "n_train", "n_test",
//  "num_classes", "dataset", "seconds"}
nlohmann::json to_json(const KnnReport& r);

}  // namespace dino
