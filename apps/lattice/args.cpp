#include "lattice/args.hpp"

#include <charconv>
#include <cstdlib>

#include "lattice/core/error.hpp"

namespace lattice::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_options,
           const std::set<std::string>& flags) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (flags.count(name)) {
      check(!inline_value, "lattice", a, "this option takes no value");
      flags_.insert(name);
    } else if (value_options.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else {
        check(i + 1 < argv.size(), "lattice", a, "needs a value");
        values_[name] = argv[++i];
      }
    } else {
      fail("lattice", a, "unknown option (see `lattice help`)");
    }
  }
}

std::optional<std::string> Args::value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::string_or(const std::string& name, const std::string& fallback) const {
  return value(name).value_or(fallback);
}

long long Args::int_or(const std::string& name, long long fallback) const {
  auto v = value(name);
  if (!v) return fallback;
  long long out = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  check(ec == std::errc() && ptr == v->data() + v->size(), "lattice", "--" + name, "expected an integer, got '", *v,
        "'");
  return out;
}

double Args::double_or(const std::string& name, double fallback) const {
  auto v = value(name);
  if (!v) return fallback;
  char* end = nullptr;
  const double out = std::strtod(v->c_str(), &end);
  check(end != v->c_str() && *end == '\0', "lattice", "--" + name, "expected a number, got '", *v, "'");
  return out;
}

}  // namespace lattice::cli
