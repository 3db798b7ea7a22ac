#pragma once
// The KoLeo regulariser of DINOv2 (Sablayrolles et al., "Spreading vectors for similarity
// search"): the Kozachenko-Leonenko differential-entropy estimator over a batch of features,
// minus the mean log distance of each L2-normalised row to its nearest other row. Added to the
// DINO loss it pushes the features of a batch apart, which nearest-neighbour retrieval (k-NN
// evaluation) rewards. Off unless a recipe sets loss.koleo_weight.
#include "core/tensor.h"

namespace dino {

// x: (B, D) features, B >= 2, on any device. Returns the scalar
//   -1/B sum_i log(|| z_i - z_nn(i) + eps ||_2 + eps),  z = l2_normalize(x, eps), eps = 1e-8,
// nn(i) = argmax_{j != i} z_i . z_j (the first index on ties), exactly DINOv2's KoLeoLoss
// (eps inside the difference is torch.nn.PairwiseDistance's). The neighbour search is not
// differentiated (DINOv2 runs it under no_grad); the gradient reaches both z_i and z_nn(i).
Tensor koleo_loss(const Tensor& x);

}  // namespace dino
