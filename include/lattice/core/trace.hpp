// Op tracing for per-layer tables (`lattice demo`, benchmarks). While a
// TraceSession is alive on a thread, ops on that thread append one OpRecord
// each. Layer names come from the innermost TraceLabel. Tracing off costs one
// thread-local pointer test per op.
//
// Times are host wall-clock milliseconds around the op; on the CPU backend
// that is the op's run time. (GPU ops record enqueue time; device timing
// belongs to the benchmark harness.)
#pragma once

#include <cstdint>
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
};

class TraceSession {
 public:
  TraceSession();
  ~TraceSession();
  TraceSession(const TraceSession&) = delete;
  TraceSession& operator=(const TraceSession&) = delete;
  const std::vector<OpRecord>& records() const { return records_; }

 private:
  friend void trace_record(OpRecord record);
  std::vector<OpRecord> records_;
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
