#pragma once

#include <string>
#include <vector>

namespace lattice::cli {

int cmd_info(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_demo_model(const std::vector<std::string>& args);  // `lattice demo --model ...`
int cmd_train(const std::vector<std::string>& args);

}  // namespace lattice::cli
