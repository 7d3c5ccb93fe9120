#include "lattice/table.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace lattice::cli {

std::string Table::str(std::size_t left_columns) const {
  std::vector<std::size_t> width(header_.size(), 0);
  for (std::size_t c = 0; c < header_.size(); ++c) width[c] = header_[c].size();
  for (const auto& row : rows_)
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::size_t total = 0;
  for (std::size_t w : width) total += w + 2;
  std::ostringstream os;
  auto emit = [&](const std::vector<std::string>& row) {
    for (std::size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < row.size() ? row[c] : "";
      const std::string pad(width[c] - cell.size(), ' ');
      os << (c < left_columns ? cell + pad : pad + cell) << (c + 1 < width.size() ? "  " : "");
    }
    os << "\n";
  };
  emit(header_);
  os << std::string(total - 2, '-') << "\n";
  for (const auto& row : rows_) {
    if (row.empty()) {
      os << std::string(total - 2, '-') << "\n";
    } else {
      emit(row);
    }
  }
  return os.str();
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string grouped(long long v) {
  const std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out = v < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string si(double v) {
  if (v >= 1e9) return fixed(v / 1e9, 2) + " G";
  if (v >= 1e6) return fixed(v / 1e6, 1) + " M";
  if (v >= 1e3) return fixed(v / 1e3, 1) + " k";
  return fixed(v, 0);
}

}  // namespace lattice::cli
