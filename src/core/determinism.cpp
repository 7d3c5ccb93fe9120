// Deterministic mode: one process-wide flag read by the code paths that would
// otherwise choose by timing (see lattice/core/determinism.hpp).
#include "lattice/core/determinism.hpp"

#include <atomic>

namespace lattice {

namespace {
std::atomic<bool> g_deterministic{false};
}  // namespace

void set_deterministic(bool enabled) { g_deterministic.store(enabled); }
bool deterministic() { return g_deterministic.load(); }

}  // namespace lattice
