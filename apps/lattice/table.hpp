// Fixed-width text tables for the command-line program.
#pragma once

#include <string>
#include <vector>

namespace lattice::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void add_rule() { rows_.emplace_back(); }
  // Columns after the first `left_columns` are right-aligned (numbers).
  std::string str(std::size_t left_columns = 2) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fixed(double v, int decimals);
// 1234567 -> "1,234,567"
std::string grouped(long long v);
// FLOP counts as "12.3 G" / "456 M"
std::string si(double v);

}  // namespace lattice::cli
