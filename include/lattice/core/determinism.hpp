// Deterministic mode (SPEC §13). Every lattice op is written to be bitwise
// reproducible run to run on the same device: no floating-point atomics,
// reductions in a fixed order (fixed chunking on the CPU, fixed-order partials
// on CUDA), and sizes of reduction splits that depend on shapes only, never on
// timing or data. What is left to chance is choice by timing: the CUDA
// convolution autotuner (set_conv_autotune) picks tile shapes by measuring
// them, and a different tile shape sums in a different order. Deterministic
// mode turns every such choice into a fixed rule: the autotuner is neither run
// nor consulted. Per-op notes are in docs/determinism.md.
//
// The setting is process-wide (an atomic flag); switch it before work starts.
#pragma once

namespace lattice {

void set_deterministic(bool enabled);
bool deterministic();

// Sets deterministic mode for a scope and restores the previous setting.
class DeterministicGuard {
 public:
  explicit DeterministicGuard(bool enabled = true) : previous_(deterministic()) { set_deterministic(enabled); }
  ~DeterministicGuard() { set_deterministic(previous_); }
  DeterministicGuard(const DeterministicGuard&) = delete;
  DeterministicGuard& operator=(const DeterministicGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace lattice
