#include <cstdio>

#include "lattice/args.hpp"
#include "lattice/commands.hpp"
#include "lattice/core/backend_info.hpp"
#include "lattice/core/error.hpp"

namespace lattice::cli {

int cmd_info(const std::vector<std::string>& argv) {
  const Args args(argv, {}, {});
  check(args.positional().empty(), "lattice info", args.positional().empty() ? "" : args.positional()[0],
        "unexpected argument");
  std::fputs(to_string(backend_info()).c_str(), stdout);
  return 0;
}

}  // namespace lattice::cli
