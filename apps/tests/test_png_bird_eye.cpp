// The `lattice` program's image pieces: PNG files through libpng and the
// bird's-eye rasterizer.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/bird_eye.hpp"
#include "lattice/png_image.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::cli {
namespace {

using lattice::testing::expect_error;
using lattice::testing::TempDir;
using seg::Rgb;

Array positions(const std::vector<float>& xyz) {
  return Array::from_vector(xyz, Shape{static_cast<std::int64_t>(xyz.size() / 3), 3}, Device::cpu());
}

TEST(AppPng, RoundTripKeepsEveryPixel) {
  // Odd, non-square size: rows are not padded and x/y are not swapped.
  RgbImage image = RgbImage::filled(7, 5, Rgb{1, 2, 3});
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      image.set(x, y,
                Rgb{static_cast<std::uint8_t>(37 * x + y), static_cast<std::uint8_t>(255 - 11 * y),
                    static_cast<std::uint8_t>((x * y * 29) & 0xff)});
    }
  }
  TempDir dir;
  write_png(dir / "a.png", image);
  const RgbImage back = read_png(dir / "a.png");
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, image.pixels);
  EXPECT_EQ(back.at(6, 4), image.at(6, 4));
}

TEST(AppPng, WritesARealPngSignature) {
  TempDir dir;
  write_png(dir / "b.png", RgbImage::filled(2, 3, Rgb{9, 8, 7}));
  const std::string bytes = lattice::testing::read_file(dir / "b.png");
  ASSERT_GE(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST(AppPng, ErrorsNameTheFile) {
  TempDir dir;
  const auto missing = dir / "missing.png";
  expect_error<IoError>([&] { read_png(missing); }, {"read_png", missing.string()});
  const auto garbage = dir / "garbage.png";
  lattice::testing::write_file(garbage, "this is not a png file at all");
  expect_error<IoError>([&] { read_png(garbage); }, {"read_png", garbage.string(), "libpng"});
  // A truncated PNG: a real header, then nothing.
  write_png(dir / "whole.png", RgbImage::filled(16, 16, Rgb{5, 5, 5}));
  const std::string whole = lattice::testing::read_file(dir / "whole.png");
  lattice::testing::write_file(dir / "cut.png", whole.substr(0, whole.size() / 2));
  expect_error<IoError>([&] { read_png(dir / "cut.png"); }, {"read_png", "cut.png"});
  const auto nowhere = dir / "no_such_folder" / "x.png";
  expect_error<IoError>([&] { write_png(nowhere, RgbImage::filled(1, 1, Rgb{})); }, {"write_png", nowhere.string()});
}

TEST(AppPng, RejectsBadImages) {
  TempDir dir;
  RgbImage bad = RgbImage::filled(2, 2, Rgb{});
  bad.pixels.pop_back();
  expect_error<ValueError>([&] { write_png(dir / "bad.png", bad); }, {"write_png", "image", "width * height * 3"});
  expect_error<ValueError>([&] { write_png(dir / "empty.png", RgbImage{}); }, {"write_png", "0 x 0"});
  expect_error<ValueError>([] { RgbImage::filled(0, 4, Rgb{}); }, {"RgbImage", "0 x 4"});
  const RgbImage small = RgbImage::filled(2, 2, Rgb{});
  expect_error<ValueError>([&] { (void)small.at(2, 0); }, {"RgbImage::at", "(2, 0)"});
}

// 2 x 2 m at 0.5 m per pixel: a 4 x 4 image, x up, y to the left.
BirdEyeOptions tiny_view() { return {.half_extent = 1.0, .metres_per_pixel = 0.5, .background = Rgb{1, 1, 1}}; }

TEST(AppBirdEye, PointsLandOnTheirPixelsInTheirClassColour) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Array p = positions({
      0.75f,  0.75f, 0.0f,   // front-left corner: col 0, row 0
      -0.9f,  -0.9f, 0.0f,   // back-right corner: col 3, row 3
      0.1f,   -0.1f, 0.0f,   // col floor(1.1 / 0.5) = 2, row floor(0.9 / 0.5) = 1
      0.1f,   -0.1f, 0.5f,   // same pixel, higher: drawn over the one before
      0.2f,   -0.2f, -1.0f,  // same pixel, lower: hidden
      1.5f,   0.0f,  0.0f,   // beyond the front edge: skipped
      0.0f,   -1.0f, 0.0f,   // exactly on the right edge (col 4): skipped
      nan,    0.0f,  0.0f,   // non-finite: skipped
      -0.25f, 0.25f, 0.0f,   // col 1, row 2, ignored class: grey
  });
  const std::vector<std::int32_t> classes{0, 8, 12, 5, 14, 0, 0, 0, seg::k_ignore};
  BirdEyeStats stats;
  const RgbImage im = render_bird_eye(p, classes, tiny_view(), &stats);
  ASSERT_EQ(im.width, 4);
  ASSERT_EQ(im.height, 4);
  EXPECT_EQ(stats.drawn, 6);
  EXPECT_EQ(stats.skipped, 3);
  EXPECT_EQ(im.at(0, 0), (Rgb{100, 150, 245}));  // car: yaml BGR [245, 150, 100]
  EXPECT_EQ(im.at(3, 3), (Rgb{255, 0, 255}));    // road
  EXPECT_EQ(im.at(2, 1), (Rgb{255, 30, 30}));    // person (z 0.5) over building (z 0) and vegetation (z -1)
  EXPECT_EQ(im.at(1, 2), seg::k_ignore_color);
  int background = 0;
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) background += im.at(x, y) == Rgb{1, 1, 1};
  }
  EXPECT_EQ(background, 16 - 4);
}

TEST(AppBirdEye, HigherPointWinsWhateverTheOrder) {
  const Array p = positions({0.1f, 0.1f, 2.0f, 0.1f, 0.1f, 1.0f});
  const RgbImage a = render_bird_eye(p, {17, 8}, tiny_view());
  const Array q = positions({0.1f, 0.1f, 1.0f, 0.1f, 0.1f, 2.0f});
  const RgbImage b = render_bird_eye(q, {8, 17}, tiny_view());
  EXPECT_EQ(a.at(1, 1), seg::k_class_colors[17]);
  EXPECT_EQ(b.at(1, 1), seg::k_class_colors[17]);
}

TEST(AppBirdEye, EmptyInputGivesABlankImageOfTheViewSize) {
  BirdEyeStats stats{.drawn = 5, .skipped = 5};
  const RgbImage im =
      render_bird_eye(Array::empty(Shape{0, 3}, DType::f32, Device::cpu()), {}, BirdEyeOptions{}, &stats);
  EXPECT_EQ(im.width, 1024);
  EXPECT_EQ(im.height, 1024);
  EXPECT_EQ(im.pixels, RgbImage::filled(1024, 1024, BirdEyeOptions{}.background).pixels);
  EXPECT_EQ(stats.drawn, 0);
  EXPECT_EQ(stats.skipped, 0);
}

TEST(AppBirdEye, RejectsBadInput) {
  const Array p = positions({0, 0, 0, 1, 1, 1});
  expect_error<ValueError>([&] { render_bird_eye(p, {0}, tiny_view()); }, {"render_bird_eye", "classes", "1 entries"});
  expect_error<ValueError>([&] { render_bird_eye(p, {0, 19}, tiny_view()); }, {"classes", "point 1", "19"});
  expect_error<ValueError>([&] { render_bird_eye(p, {0, -1}, tiny_view()); }, {"classes", "-1"});
  expect_error<ValueError>(
      [&] {
        render_bird_eye(Array::zeros(Shape{2, 2}, DType::f32, Device::cpu()), {0, 0}, tiny_view());
      },
      {"positions", "(N, 3)"});
  expect_error<TypeError>(
      [&] {
        render_bird_eye(Array::zeros(Shape{2, 3}, DType::f64, Device::cpu()), {0, 0}, tiny_view());
      },
      {"positions", "float32"});
  BirdEyeOptions bad = tiny_view();
  bad.metres_per_pixel = 0;
  expect_error<ValueError>([&] { render_bird_eye(p, {0, 0}, bad); }, {"metres_per_pixel"});
  bad = tiny_view();
  bad.half_extent = 1e6;
  expect_error<ValueError>([&] { render_bird_eye(p, {0, 0}, bad); }, {"half_extent", "32768"});
}

TEST(AppBirdEye, SideBySideKeepsBothImages) {
  const RgbImage a = RgbImage::filled(2, 3, Rgb{10, 0, 0});
  RgbImage b = RgbImage::filled(3, 3, Rgb{0, 20, 0});
  b.set(2, 2, Rgb{0, 0, 30});
  const RgbImage c = side_by_side(a, b, 1, Rgb{255, 255, 255});
  ASSERT_EQ(c.width, 6);
  ASSERT_EQ(c.height, 3);
  EXPECT_EQ(c.at(1, 2), (Rgb{10, 0, 0}));
  EXPECT_EQ(c.at(2, 0), (Rgb{255, 255, 255}));
  EXPECT_EQ(c.at(3, 0), (Rgb{0, 20, 0}));
  EXPECT_EQ(c.at(5, 2), (Rgb{0, 0, 30}));
  expect_error<ValueError>([&] { side_by_side(a, RgbImage::filled(1, 2, Rgb{}), 0, Rgb{}); },
                           {"side_by_side", "height"});
}

}  // namespace
}  // namespace lattice::cli
