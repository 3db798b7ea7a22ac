#pragma once
// JPEG decoding with libjpeg-turbo (its TurboJPEG API): accurate integer IDCT and fancy
// chroma upsampling, the library's defaults and Pillow's, so pixels match Pillow's decode.
// A reduction of 2, 4 or 8 decodes at that fraction of the size in the DCT domain (the
// reduced IDCTs), which is cheaper than decoding in full and resizing, as DALI and Pillow's
// draft() do when the wanted crop is much smaller than the image.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image.h"

namespace dino::data {

bool is_jpeg(const uint8_t* data, size_t size);  // by the SOI marker

struct JpegHeader {
  int height = 0, width = 0, channels = 0;  // channels: 1 for greyscale files, else 3
};
// Throws dino::Error naming `path` when the header cannot be read.
JpegHeader read_jpeg_header(const uint8_t* data, size_t size, const std::string& path);

// The height or width of a dimension decoded at 1/reduction (rounded up, as libjpeg does).
int reduced_size(int size, int reduction);

// Decodes into out.u8 (CHW, `channels` 1 or 3; colour files to 1 channel keep the luma) at
// 1/reduction, reduction in {1, 2, 4, 8}; sets out's sizes, full_* to the stored size.
// Throws dino::Error naming `path` for corrupt data.
void decode_jpeg(const uint8_t* data, size_t size, int channels, int reduction,
                 const std::string& path, SourceImage& out);

}  // namespace dino::data
