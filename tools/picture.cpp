#include "tools/picture.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"

namespace dino::tools {

Canvas::Canvas(int width, int height, Rgb background) : width_(width), height_(height) {
  DINO_CHECK(width > 0 && height > 0, "[picture] canvas of ", width, " x ", height, " pixels");
  rgb_.resize(size_t(width) * size_t(height) * 3);
  for (size_t i = 0; i < rgb_.size(); i += 3)
    std::copy(background.begin(), background.end(), rgb_.begin() + ptrdiff_t(i));
}

void Canvas::blend(int x, int y, Rgb color, float alpha) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_ || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.f);
  uint8_t* p = at(x, y);
  for (int c = 0; c < 3; ++c) p[c] = uint8_t(std::lround(p[c] + alpha * (float(color[c]) - p[c])));
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb color) {
  for (int j = std::max(0, y); j < std::min(height_, y + h); ++j)
    for (int i = std::max(0, x); i < std::min(width_, x + w); ++i)
      std::copy(color.begin(), color.end(), at(i, j));
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb color, double width,
                  double dash) {
  // Coverage of each pixel near the segment by its distance to it: 1 within width/2, fading
  // to 0 over one more pixel. Pixels are visited once, so joints of a polyline stay even.
  const double half = width / 2, dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  const int xa = int(std::floor(std::min(x0, x1) - half - 1)),
            xb = int(std::ceil(std::max(x0, x1) + half + 1));
  const int ya = int(std::floor(std::min(y0, y1) - half - 1)),
            yb = int(std::ceil(std::max(y0, y1) + half + 1));
  for (int y = std::max(ya, 0); y <= std::min(yb, height_ - 1); ++y)
    for (int x = std::max(xa, 0); x <= std::min(xb, width_ - 1); ++x) {
      const double px = x + 0.5 - x0, py = y + 0.5 - y0;
      const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
      if (dash > 0 && std::fmod(t * std::sqrt(len2), 2 * dash) > dash) continue;
      const double d = std::hypot(px - t * dx, py - t * dy);
      const double cover = std::clamp(half + 0.5 - d, 0.0, 1.0);
      if (cover <= 0) continue;
      uint8_t* p = at(x, y);
      // Keep the strongest coverage a pixel got from this colour (max, not sum) at joints.
      for (int c = 0; c < 3; ++c) {
        const double target = p[c] + cover * (double(color[c]) - p[c]);
        p[c] = uint8_t(std::lround(target));
      }
    }
}

void Canvas::text(double x, double y, const std::string& s, Rgb color, int scale, bool vertical) {
  std::vector<char> buf(s.size() * 1200 + 1200);  // ~270 bytes per glyph on average, '8' more
  std::string copy = s;
  const int quads = stb_easy_font_print(0, 0, copy.data(), nullptr, buf.data(), int(buf.size()));
  for (int q = 0; q < quads; ++q) {
    // Four vertices of (x, y, z, rgba) each: 16 bytes.
    float v[4][2];
    for (int k = 0; k < 4; ++k) std::memcpy(v[k], buf.data() + (q * 4 + k) * 16, 2 * sizeof(float));
    const float qx0 = std::min({v[0][0], v[1][0], v[2][0], v[3][0]}),
                qx1 = std::max({v[0][0], v[1][0], v[2][0], v[3][0]});
    const float qy0 = std::min({v[0][1], v[1][1], v[2][1], v[3][1]}),
                qy1 = std::max({v[0][1], v[1][1], v[2][1], v[3][1]});
    for (int j = int(qy0 * scale); j < int(qy1 * scale); ++j)
      for (int i = int(qx0 * scale); i < int(qx1 * scale); ++i) {
        if (vertical)
          blend(int(x) + j, int(y) - i, color, 1.f);
        else
          blend(int(x) + i, int(y) + j, color, 1.f);
      }
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  std::string copy = s;
  return stb_easy_font_width(copy.data()) * scale;
}

void Canvas::write_png(const std::string& path, const std::string& who) const {
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  DINO_CHECK(stbi_write_png_to_func(append, &png, width_, height_, 3, rgb_.data(), width_ * 3), "[",
             who, "] cannot encode the PNG for ", path);
  write_file_atomically(path, png);
}

}  // namespace dino::tools
