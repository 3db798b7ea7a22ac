#include "data/image_jpeg.h"

#include <turbojpeg.h>

#include <string>

#include "core/error.h"

namespace dino::data {
namespace {

// One TurboJPEG handle per thread: creating one allocates, and a handle is not thread-safe.
struct Handle {
  tjhandle h = tjInitDecompress();
  ~Handle() {
    if (h) tjDestroy(h);
  }
};
thread_local Handle handle;

tjhandle decoder() {
  DINO_CHECK(handle.h != nullptr,
             "[jpeg] cannot create a libjpeg-turbo decoder: ", tjGetErrorStr2(nullptr));
  return handle.h;
}

// A failed call can leave the decoder mid-stream (a failed header read is not aborted), and
// the next file would then read as corrupt: start the next one on a fresh handle.
[[noreturn]] void fail(const std::string& path, const std::string& message) {
  if (handle.h) tjDestroy(handle.h);
  handle.h = tjInitDecompress();
  throw Error(str_cat("[jpeg] cannot decode ", path, ": ", message));
}

}  // namespace

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

JpegHeader read_jpeg_header(const uint8_t* data, size_t size, const std::string& path) {
  tjhandle h = decoder();
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(h, data, static_cast<unsigned long>(size), &width, &height, &subsamp,
                          &colorspace) != 0)
    fail(path, tjGetErrorStr2(h));
  if (width <= 0 || height <= 0) fail(path, "empty image");
  return {height, width, colorspace == TJCS_GRAY ? 1 : 3};
}

int reduced_size(int size, int reduction) { return (size + reduction - 1) / reduction; }

void decode_jpeg(const uint8_t* data, size_t size, int channels, int reduction,
                 const std::string& path, SourceImage& out) {
  DINO_CHECK(channels == 1 || channels == 3, "[jpeg] channels must be 1 or 3, got ", channels);
  DINO_CHECK(reduction == 1 || reduction == 2 || reduction == 4 || reduction == 8,
             "[jpeg] reduction must be 1, 2, 4 or 8, got ", reduction);
  const JpegHeader header = read_jpeg_header(data, size, path);
  const int w = reduced_size(header.width, reduction), h = reduced_size(header.height, reduction);
  tjhandle dec = decoder();
  const size_t plane = size_t(h) * w;
  // Greyscale output lands in place; colour goes through the interleaved buffer and is split
  // into planes.
  uint8_t* dst = nullptr;
  if (channels == 1) {
    out.u8.resize(plane);
    dst = out.u8.data();
  } else {
    out.interleaved.resize(plane * 3);
    dst = out.interleaved.data();
  }
  // A warning such as extraneous bytes between markers still yields the whole image, which
  // Pillow accepts too; a truncated file (libjpeg fills the rest with grey) or an error does
  // not.
  const int rc = tjDecompress2(dec, data, static_cast<unsigned long>(size), dst, w, w * channels, h,
                               channels == 1 ? TJPF_GRAY : TJPF_RGB, 0);
  if (rc != 0) {
    const std::string message = tjGetErrorStr2(dec);
    if (tjGetErrorCode(dec) != TJERR_WARNING || message.find("Premature end") != std::string::npos)
      fail(path, message);
  }
  if (channels == 3) {
    out.u8.resize(plane * 3);
    uint8_t *r = out.u8.data(), *g = r + plane, *b = g + plane;
    const uint8_t* in = out.interleaved.data();
    for (size_t i = 0; i < plane; ++i) {
      r[i] = in[3 * i];
      g[i] = in[3 * i + 1];
      b[i] = in[3 * i + 2];
    }
  }
  out.is_u8 = true;
  out.channels = channels;
  out.height = h;
  out.width = w;
  out.full_height = header.height;
  out.full_width = header.width;
}

}  // namespace dino::data
