// Op tracing for per-layer tables (`lattice demo`, benchmarks). While a
// TraceSession is alive on a thread, ops on that thread append one OpRecord
// each. Layer names come from the innermost TraceLabel. Tracing off costs one
// thread-local pointer test per op.
//
// Times are host wall-clock milliseconds around the op on the CPU, and
// device time between CUDA events on the op's stream on CUDA (resolved when
// records() is read, so tracing adds no host synchronisation to the ops).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lattice {

struct OpRecord {
  std::string layer;  // innermost TraceLabel, "" if none
  std::string op;     // e.g. "subm_conv3d"
  std::string route;  // e.g. "gather_gemm_scatter"
  std::int64_t rows_in = 0;
  std::int64_t rows_out = 0;
  std::int64_t edges = 0;
  std::int64_t channels_in = 0;
  std::int64_t channels_out = 0;
  double flops = 0;        // 2 * edges * C_in * C_out for convolutions
  double relation_ms = 0;  // time spent building (or fetching) the relation
  double total_ms = 0;     // whole op, relation included
  bool relation_cached = false;
  // Set by ops whose counts or times live on a device: fills the fields above
  // when the session's records are read (a host-facing step).
  std::function<void(OpRecord&)> finalize;
};

class TraceSession {
 public:
  TraceSession();
  ~TraceSession();
  TraceSession(const TraceSession&) = delete;
  TraceSession& operator=(const TraceSession&) = delete;
  // Host-facing: completes pending device records (waits for their events).
  const std::vector<OpRecord>& records() const;

 private:
  friend void trace_record(OpRecord record);
  mutable std::vector<OpRecord> records_;
  TraceSession* previous_;
};

// Names the layer for ops issued while it is alive (nests: innermost wins).
class TraceLabel {
 public:
  explicit TraceLabel(std::string name);
  ~TraceLabel();
  TraceLabel(const TraceLabel&) = delete;
  TraceLabel& operator=(const TraceLabel&) = delete;

 private:
  std::string previous_;
};

bool tracing();
// Appends a record to the active session (no-op without one).
void trace_record(OpRecord record);

}  // namespace lattice
