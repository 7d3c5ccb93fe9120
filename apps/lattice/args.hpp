// A tiny command-line parser: positional arguments and --name value / --flag
// options, with errors that name the option.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lattice::cli {

class Args {
 public:
  // `value_options` take a value; `flags` do not. Unknown options are an error.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_options,
       const std::set<std::string>& flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool flag(const std::string& name) const { return flags_.count(name) != 0; }
  std::optional<std::string> value(const std::string& name) const;
  std::string string_or(const std::string& name, const std::string& fallback) const;
  long long int_or(const std::string& name, long long fallback) const;
  double double_or(const std::string& name, double fallback) const;

 private:
  std::vector<std::string> positional_;
  std::set<std::string> flags_;
  std::map<std::string, std::string> values_;
};

}  // namespace lattice::cli
