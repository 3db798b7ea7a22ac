#pragma once
// The drawing the picture-writing subcommands (plot, attention) share: an RGB canvas with
// anti-aliased lines, rectangles and text (stb_easy_font's glyphs, scaled), written as PNG.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dino::tools {

using Rgb = std::array<uint8_t, 3>;

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);
  int width() const { return width_; }
  int height() const { return height_; }
  uint8_t* at(int x, int y) { return rgb_.data() + (size_t(y) * size_t(width_) + size_t(x)) * 3; }

  // Blends `color` over pixel (x, y) with opacity alpha in [0, 1]; outside the canvas: nothing.
  void blend(int x, int y, Rgb color, float alpha);
  void fill_rect(int x, int y, int w, int h, Rgb color);
  // A line `width` pixels wide with anti-aliased edges; dash > 0 draws dash-pixel dashes.
  void line(double x0, double y0, double x1, double y1, Rgb color, double width = 1.5,
            double dash = 0);
  // Text with its top-left corner at (x, y), glyphs scaled by `scale` (about 7 * scale pixels
  // high); vertical: rotated to read bottom-to-top.
  void text(double x, double y, const std::string& s, Rgb color, int scale = 2,
            bool vertical = false);
  static int text_width(const std::string& s, int scale = 2);
  static int text_height(int scale = 2) { return 7 * scale; }

  // Written whole or not at all (core/atomic_file.h); `who` names the subcommand in errors.
  void write_png(const std::string& path, const std::string& who) const;

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

}  // namespace dino::tools
