// Per-op trace records for front ends (see lattice/core/trace.hpp). Inactive
// (and free) unless a TraceSession is open on this thread. On CUDA it records
// events on the op's stream and reads them, and the device-side row and edge
// counts, only when the session's records are read.
#pragma once

#include <memory>

#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"

namespace lattice::ops::detail {

class OpTrace {
 public:
  explicit OpTrace(Device device);
  bool active() const { return active_; }
  // Marks the end of relation building.
  void relation_done(bool cached);
  // Appends the record. Row counts come from `in`/`out`, edges from `rel`
  // (convolutions; pointwise convolutions count one edge per row).
  void record(OpRecord r, std::shared_ptr<const CoordinateSet> in, std::shared_ptr<const CoordinateSet> out,
              std::shared_ptr<const Relation> rel, bool is_conv);

 private:
  struct Events;
  Device device_;
  bool active_;
  Stopwatch wall_;
  double relation_ms_ = 0;
  bool cached_ = false;
  std::shared_ptr<Events> events_;
};

}  // namespace lattice::ops::detail
