#include "ops/op_trace.hpp"

#include "backend/cuda/api.hpp"

namespace lattice::ops::detail {

struct OpTrace::Events {
  explicit Events(int device) : start(device), relation(device), stop(device) {}
  cuda::Event start, relation, stop;
};

OpTrace::OpTrace(Device device) : device_(device), active_(tracing()) {
  if (active_ && device_.is_cuda()) {
    events_ = std::make_shared<Events>(device_.index);
    events_->start.record();
  }
}

void OpTrace::relation_done(bool cached) {
  if (!active_) return;
  cached_ = cached;
  relation_ms_ = wall_.ms();
  if (events_) events_->relation.record();
}

void OpTrace::record(OpRecord r, std::shared_ptr<const CoordinateSet> in, std::shared_ptr<const CoordinateSet> out,
                     std::shared_ptr<const Relation> rel, bool is_conv) {
  if (!active_) return;
  r.relation_cached = cached_;
  if (events_) {
    events_->stop.record();
  } else {
    r.total_ms = wall_.ms();
    r.relation_ms = rel ? relation_ms_ : 0.0;
  }
  auto events = events_;
  const bool had_relation = rel != nullptr;
  r.finalize = [events, in, out, rel, is_conv, had_relation](OpRecord& rec) {
    if (events) {
      rec.total_ms = cuda::Event::elapsed_ms(events->start, events->stop);
      rec.relation_ms = had_relation ? cuda::Event::elapsed_ms(events->start, events->relation) : 0.0;
    }
    if (in) rec.rows_in = in->rows();
    if (out) rec.rows_out = out->rows();
    if (is_conv) {
      rec.edges = rel ? rel->num_edges() : rec.rows_out;
      rec.flops = 2.0 * static_cast<double>(rec.edges) * static_cast<double>(rec.channels_in) *
                  static_cast<double>(rec.channels_out);
    }
  };
  trace_record(std::move(r));
}

}  // namespace lattice::ops::detail
