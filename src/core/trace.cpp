#include "lattice/core/trace.hpp"

namespace lattice {

namespace {
thread_local TraceSession* t_session = nullptr;
thread_local std::string t_label;
}  // namespace

TraceSession::TraceSession() : previous_(t_session) { t_session = this; }
TraceSession::~TraceSession() { t_session = previous_; }

TraceLabel::TraceLabel(std::string name) : previous_(std::move(t_label)) { t_label = std::move(name); }
TraceLabel::~TraceLabel() { t_label = std::move(previous_); }

const std::vector<OpRecord>& TraceSession::records() const {
  for (OpRecord& r : records_) {
    if (r.finalize) {
      auto finalize = std::move(r.finalize);
      r.finalize = nullptr;
      finalize(r);
    }
  }
  return records_;
}

bool tracing() { return t_session != nullptr; }

void trace_record(OpRecord record) {
  if (t_session == nullptr) return;
  if (record.layer.empty()) record.layer = t_label;
  t_session->records_.push_back(std::move(record));
}

}  // namespace lattice
