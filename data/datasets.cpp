#include "data/datasets.h"

#include "core/error.h"

namespace dino::data {

const char* split_name(Split split) { return split == Split::train ? "train" : "test"; }

void Dataset::load(size_t index, SourceImage& out, const ReductionPlan& plan) const {
  out.f32 = get(index);
  out.is_u8 = false;
  out.channels = out.f32.channels;
  out.height = out.full_height = out.f32.height;
  out.width = out.full_width = out.f32.width;
  plan(out.height, out.width);
}

std::string Dataset::class_name(int label) const { return str_cat("class ", label); }

U8Dataset::U8Dataset(std::string name, Split split, int channels, int side, int num_classes,
                     std::vector<uint8_t> pixels, std::vector<int> labels,
                     std::vector<std::string> class_names)
    : name_(std::move(name)),
      split_(split),
      channels_(channels),
      side_(side),
      num_classes_(num_classes),
      pixels_(std::move(pixels)),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)) {
  DINO_CHECK(pixels_.size() == labels_.size() * size_t(channels_) * side_ * side_, "[", name_, "] ",
             pixels_.size(), " pixel bytes do not match ", labels_.size(), " images of ", side_,
             "x", side_, "x", channels_);
}

Image U8Dataset::get(size_t index) const {
  DINO_CHECK(index < labels_.size(), "[", name_, "] index ", index, " out of range (",
             labels_.size(), " images)");
  const size_t n = size_t(channels_) * side_ * side_;
  return image_from_u8(pixels_.data() + index * n, channels_, side_, side_);
}

void U8Dataset::load(size_t index, SourceImage& out, const ReductionPlan& plan) const {
  DINO_CHECK(index < labels_.size(), "[", name_, "] index ", index, " out of range (",
             labels_.size(), " images)");
  const size_t n = size_t(channels_) * side_ * side_;
  out.u8.assign(pixels_.begin() + ptrdiff_t(index * n),
                pixels_.begin() + ptrdiff_t((index + 1) * n));
  out.is_u8 = true;
  out.channels = channels_;
  out.height = out.full_height = side_;
  out.width = out.full_width = side_;
  plan(side_, side_);
}

int U8Dataset::label(size_t index) const {
  DINO_CHECK(index < labels_.size(), "[", name_, "] index ", index, " out of range (",
             labels_.size(), " images)");
  return labels_[index];
}

std::string U8Dataset::class_name(int label) const {
  return label >= 0 && size_t(label) < class_names_.size() ? class_names_[size_t(label)]
                                                           : Dataset::class_name(label);
}

std::string U8Dataset::describe() const {
  return str_cat(name_, " ", split_name(split_), " (", labels_.size(), " images, ", side_, "x",
                 side_, "x", channels_, ", ", num_classes_, " classes)");
}

std::unique_ptr<Dataset> open_dataset(const std::string& spec, Split split) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const bool has_arg = colon != std::string::npos;
  const std::string arg = has_arg ? spec.substr(colon + 1) : std::string();
  if (kind == "fashion-mnist")
    return open_fashion_mnist(has_arg ? arg : "/usr/share/datasets/fashion-mnist", split);
  if (kind == "synthetic") return open_synthetic(parse_synthetic_config(arg), split);
  if (kind == "cifar10" || kind == "cifar100" || kind == "folder") {
    DINO_CHECK(has_arg && !arg.empty(), "[dataset] spec '", spec, "' needs a directory: ", kind,
               ":DIR");
    if (kind == "folder") return open_image_folder(arg, split);
    return open_cifar(arg, kind == "cifar10" ? 10 : 100, split);
  }
  throw Error(str_cat("[dataset] unknown dataset spec '", spec,
                      "' (expected fashion-mnist[:DIR], cifar10:DIR, cifar100:DIR, folder:DIR "
                      "or synthetic[:n=..,test=..,size=..,classes=..,channels=..,seed=..])"));
}

}  // namespace dino::data
