// safetensors reader/writer: round trips of every dtype, a byte-exact file
// built by hand from the public format, and every malformed-file case.
#include <cstring>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "lattice/io/safetensors.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

// Lookup in an ordered name -> Array list (nn::StateDict / io::TensorDict).
inline const Array* find_entry(const std::vector<std::pair<std::string, Array>>& d, const std::string& name) {
  for (const auto& e : d) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}
inline const Array& entry(const std::vector<std::pair<std::string, Array>>& d, const std::string& name) {
  const Array* a = find_entry(d, name);
  if (a == nullptr) throw std::out_of_range("no entry " + name);
  return *a;
}

using io::deserialize_safetensors;
using io::serialize_safetensors;
using io::TensorDict;

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file from a header text (padded with spaces to 8 bytes) and the data bytes.
std::string file_of(std::string header, const std::string& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

void expect_same(const Array& a, const Array& b) {
  EXPECT_EQ(a.dtype(), b.dtype());
  EXPECT_EQ(a.shape(), b.shape());
  EXPECT_EQ(bytes_of(a), bytes_of(b));
}

TEST(Safetensors, RoundTripEveryDtype) {
  TensorDict t;
  t.emplace_back("a_f16", make_array({0.5, -1.25, 3.0, 65504.0}, Shape{2, 2}, DType::f16));
  t.emplace_back("b_bf16", make_array({1.0, -2.0, 0.15625}, Shape{3}, DType::bf16));
  t.emplace_back("c_f32", Array::from_vector<float>({1.5f, -0.0f, 3.25f, 1e-30f, 7, 8}, Shape{1, 2, 3}));
  t.emplace_back("d_f64", Array::from_vector<double>({3.141592653589793}, Shape{}));  // scalar
  t.emplace_back("e_i32", Array::from_vector<std::int32_t>({-1, 2147483647, -2147483647 - 1}, Shape{3}));
  t.emplace_back("f_i64", Array::from_vector<std::int64_t>({-5, std::int64_t{1} << 40}, Shape{2, 1}));
  t.emplace_back("g_u8", Array::from_vector<std::uint8_t>({0, 255, 7}, Shape{3}));
  t.emplace_back("h_u32", Array::from_vector<std::uint32_t>({4294967295u}, Shape{1}));
  t.emplace_back("i_empty", Array::zeros(Shape{0, 4}, DType::f32));
  t.emplace_back("j_empty_scalarless", Array::zeros(Shape{3, 0, 2}, DType::i64));
  const io::Metadata meta{{"format", "pt"}, {"quote\"and\\slash\n", "\x01\xc3\xa9"}};
  TempDir dir;
  io::save_safetensors((dir / "x.safetensors").string(), t, meta);
  io::Metadata got_meta;
  const TensorDict back = io::load_safetensors((dir / "x.safetensors").string(), Device::cpu(), &got_meta);
  ASSERT_EQ(back.size(), t.size());
  for (const auto& [name, a] : t) {
    SCOPED_TRACE(name);
    ASSERT_EQ(find_entry(back, name) != nullptr, true);
    expect_same(entry(back, name), a);
  }
  EXPECT_EQ(got_meta, meta);
  // Re-serializing what was read gives the same bytes.
  EXPECT_EQ(serialize_safetensors(back, got_meta), read_file(dir / "x.safetensors"));
  // Nothing at all.
  const TensorDict none = deserialize_safetensors(serialize_safetensors({}));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(serialize_safetensors({}), le64(8) + "{}      ");
}

TEST(Safetensors, ByteExactAgainstHandBuiltLayout) {
  TensorDict t;
  t.emplace_back("b", Array::from_vector<std::int32_t>({-1}, Shape{1, 1}));
  t.emplace_back("w", Array::from_vector<float>({1.0f, 2.0f}, Shape{2}));
  std::string header = R"({"__metadata__":{"k":"v"},"b":{"dtype":"I32","shape":[1,1],"data_offsets":[0,4]},)"
                       R"("w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::string data = std::string("\xff\xff\xff\xff", 4) + std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  const std::string expect = file_of(header, data);
  EXPECT_EQ(expect.size() % 8, 4u);  // 8 + padded header (multiple of 8) + 12 data bytes
  EXPECT_EQ(serialize_safetensors(t, {{"k", "v"}}), expect);
  // A reader must accept a hand-written header with whitespace, escapes and any key order.
  const std::string loose = file_of(
      " {\n \"w\" : {\"shape\": [2], \"data_offsets\": [4, 12], \"dtype\": \"F32\"},\n"
      " \"\\u0062\": {\"dtype\":\"I32\",\"shape\":[1,1],\"data_offsets\":[0,4]}, \"__metadata__\": {} }",
      data, false);
  std::string fixed = loose;
  fixed[8] = '{';
  fixed[9] = ' ';  // must start with '{'
  const TensorDict back = deserialize_safetensors(fixed);
  expect_same(entry(back, "w"), entry(t, "w"));
  expect_same(entry(back, "b"), entry(t, "b"));
}

TEST(Safetensors, LoadsOntoRequestedDeviceAndKeepsSourceIntact) {
  TensorDict t;
  t.emplace_back("x", Array::from_vector<double>({1, 2, 3}, Shape{3}));
  const std::vector<unsigned char> before = bytes_of(t[0].second);
  const std::string bytes = serialize_safetensors(t);
  EXPECT_EQ(bytes_of(t[0].second), before);
  EXPECT_EQ(entry(deserialize_safetensors(bytes, Device::cpu()), "x").device(), Device::cpu());
}

TEST(Safetensors, EveryTruncationIsAnIoError) {
  TensorDict t;
  t.emplace_back("a", Array::from_vector<float>({1, 2, 3}, Shape{3}));
  t.emplace_back("b", Array::from_vector<std::int64_t>({4}, Shape{}));
  const std::string full = serialize_safetensors(t, {{"m", "n"}});
  for (std::size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE(len);
    EXPECT_THROW(deserialize_safetensors(full.substr(0, len)), IoError);
  }
  EXPECT_NO_THROW(deserialize_safetensors(full));
  EXPECT_THROW(deserialize_safetensors(full + "x"), IoError);  // trailing bytes past the tensors
}

TEST(Safetensors, MalformedHeaders) {
  const std::string d4(4, '\0');
  auto load = [&](const std::string& header, const std::string& data = std::string(4, '\0')) {
    return deserialize_safetensors(file_of(header, data));
  };
  auto t = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
  };
  EXPECT_NO_THROW(load(t("F32", "[1]", "[0,4]")));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {t("F8_E4M3", "[4]", "[0,4]"), "unsupported dtype 'F8_E4M3'"},
      {t("BOOL", "[4]", "[0,4]"), "unsupported dtype"},
      {t("F32", "[2]", "[0,4]"), "holds 4 bytes but shape and dtype need 8"},
      {t("F32", "[1]", "[0,8]"), "holds 8 bytes"},
      {t("F32", "[1]", "[4,0]"), "end < begin"},
      {t("U8", "[8]", "[0,8]"), "past the data section"},
      {t("F32", "[1]", "[4,8]"), "leave a gap"},
      {t("F32", "[1]", "[0]"), "data_offsets"},
      {t("F32", "[1]", "[0,4,4]"), "data_offsets"},
      {t("F32", "[-1]", "[0,4]"), "shape entry"},
      {t("F32", "[1.0]", "[0,4]"), "shape entry"},
      {t("F32", "[1e0]", "[0,4]"), "shape entry"},
      {t("F32", "1", "[0,4]"), "shape that is not an array"},
      {t("F32", "[1,1,1,1,1,1,1]", "[0,4]"), "7 dimensions"},
      {t("F32", "[99999999999999999999]", "[0,4]"), "shape entry"},
      {t("F32", "[4294967296,4294967296,4294967296]", "[0,4]"), "too large"},
      {t("F32", "[1]", "[0,18446744073709551616]"), "data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", "needs dtype, shape and data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "unknown field 'x'"},
      {R"({"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "repeats the field"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       "repeats the key 't'"},
      {R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"u":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
       "overlap or leave a gap"},
      {R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"u":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
       "overlap or leave a gap"},
      {R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "tensors cover 2"},
      {R"({"t":5})", "not a JSON object"},
      {R"({"":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "empty name"},
      {R"({"__metadata__":{"a":1},"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "not a string"},
      {R"({"__metadata__":[],"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "__metadata__ is not"},
      {R"([1,2])", "start with '{'"},
      {R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},})", "malformed header JSON"},
      {R"({"t":{"dtype":"U8","shape":[4,],"data_offsets":[0,4]}})", "malformed"},
      {R"({"t":{"dtype":"U8","shape":[04],"data_offsets":[0,4]}})", "malformed"},
      {R"({"t":{"dtype":"U8",'shape':[4],"data_offsets":[0,4]}})", "malformed"},
      {R"({"t":{"dtype":"U8\x","shape":[4],"data_offsets":[0,4]}})", "unknown escape"},
      {"{\"t\u0001\":1}", "control character"},
      {R"({"\ud800":1})", "unpaired surrogate"},
      {R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}} x)", "unexpected bytes"},
      {R"({"t":tru})", "invalid literal"},
      {R"({"t" {}})", "expected ':'"},
      {R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})", "expected '}'"},
      {std::string(100, '[') + std::string(100, ']'), "start with '{'"},
      {"{\"t\":" + std::string(100, '[') + std::string(100, ']') + "}", "deeper than 64"},
      {"{\"t\":\"abc", "unterminated"},
      {"{\"t\xff\":1}", "not valid UTF-8"},
      {"{\"t\xc0\x80\":1}", "not valid UTF-8"},
      {"{\"t\xed\xa0\x80\":1}", "not valid UTF-8"},
      {"{\"t\xe2\x82", "not valid UTF-8"},
  };
  for (const auto& [header, fragment] : cases) {
    SCOPED_TRACE(header);
    expect_error<IoError>([&] { load(header); }, {"[load_safetensors]", fragment});
  }
  // Header lengths: huge, past the end, too short.
  expect_error<IoError>([&] { deserialize_safetensors(le64(std::uint64_t{1} << 62) + "{}"); }, {"100 MB"});
  expect_error<IoError>([&] { deserialize_safetensors(le64(~std::uint64_t{0})); }, {"100 MB"});
  expect_error<IoError>([&] { deserialize_safetensors(le64(64) + "{}"); }, {"past the end"});
  expect_error<IoError>([&] { deserialize_safetensors(le64(0)); }, {"start with '{'"});
  expect_error<IoError>([&] { deserialize_safetensors("abc"); }, {"8-byte header length"});
}

TEST(Safetensors, RandomCorruptionNeverCrashes) {
  TensorDict t;
  t.emplace_back("alpha", Array::from_vector<float>({1, 2, 3, 4}, Shape{2, 2}));
  t.emplace_back("beta", Array::from_vector<std::uint8_t>({9}, Shape{1}));
  const std::string good = serialize_safetensors(t, {{"k", "v"}});
  Rng rng(11);
  int loaded = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bad = good;
    const int flips = static_cast<int>(rng.integer(1, 3));
    for (int f = 0; f < flips; ++f) {
      const auto at = static_cast<std::size_t>(rng.integer(0, static_cast<std::int64_t>(bad.size()) - 1));
      bad[at] = static_cast<char>(rng.integer(0, 255));
    }
    try {
      deserialize_safetensors(bad);
      ++loaded;  // e.g. a flipped data byte or metadata letter: still a valid file
    } catch (const IoError&) {
    }
  }
  EXPECT_GT(loaded, 0);
}

TEST(Safetensors, FileErrors) {
  TempDir dir;
  expect_error<IoError>([&] { io::load_safetensors((dir / "missing.safetensors").string()); },
                        {"[load_safetensors]", "cannot open"});
  expect_error<IoError>([&] { io::save_safetensors((dir / "no" / "such" / "dir.st").string(), {}); },
                        {"[save_safetensors]", "cannot open"});
  write_file(dir / "short.safetensors", "abc");
  expect_error<IoError>([&] { io::load_safetensors((dir / "short.safetensors").string()); }, {"short.safetensors"});
  expect_error<ValueError>(
      [&] {
        serialize_safetensors({{"__metadata__", Array::zeros(Shape{1}, DType::u8)}});
      },
      {"[save_safetensors]", "'__metadata__'"});
  expect_error<ValueError>([&] { serialize_safetensors({{"x", Array()}}); }, {"undefined"});
}

}  // namespace
}  // namespace lattice::testing
