// status_office: how a node answers for itself and asks others (docs/protocol.md §11).
//
// Answering: a STATUS_REQUEST is answered on the I/O thread with this node's report
// (built by the node from its parts), so a node whose handlers are stuck still
// answers, and no traffic stops for it. Each asker gets at most status_rate requests
// a second (burst status_burst) answered; the rest are dropped and counted
// (Stats::status_requests_refused), so a peer that floods cannot make a node spend
// its I/O thread on reports.
//
// Asking: ask() sends a STATUS_REQUEST to each live peer and collects the replies
// until all have answered or the timeout passes; a reply that does not decode is
// dropped and counted (Stats::malformed_messages), one for a request no longer
// pending is dropped and counted (Stats::late_replies).
//
// Rates: each report's streams carry events per second since the previous report
// made at least min_rate_interval earlier (a report sooner than that reuses the
// rates of the last one; the first report of a node gives averages over its life).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/node/control_sender.hpp"
#include "lib/node/node_context.hpp"
#include "meshbus/report.hpp"

namespace meshbus::detail {

inline constexpr double status_rate = 10.0;
inline constexpr double status_burst = 20.0;
inline constexpr std::chrono::milliseconds min_rate_interval{250};
/// Askers remembered for the rate bound; the least recently seen are forgotten first.
inline constexpr std::size_t max_status_askers = 4096;

class status_office {
 public:
  /// Builds this node's report (I/O thread), rates not yet filled in.
  using build_report = std::function<NodeReport()>;

  status_office(node_context& ctx, control_sender& control, build_report build);

  /// I/O thread: this node's report with its rates.
  NodeReport report(clock::time_point now);
  /// I/O thread: asks `peers` and fulfils the returned future with this node's report
  /// first, then theirs, once all answered or at `timeout`.
  std::future<MeshReport> ask(const std::vector<PeerInfo>& peers, std::chrono::milliseconds timeout,
                              clock::time_point now);
  void on_request(const wire::node_id_bytes& from, const wire::status_request_msg& m, clock::time_point now);
  void on_reply(const wire::node_id_bytes& from, wire::status_reply_msg&& m);
  /// Ends the asks whose time is up (I/O thread).
  void expire(clock::time_point now);
  clock::time_point next_due() const;
  /// The node stops: every pending ask ends with what it has.
  void finish_all();

 private:
  struct pending {
    std::vector<PeerInfo> asked;
    std::set<wire::node_id_bytes> waiting;
    MeshReport result;
    clock::time_point deadline;
    std::promise<MeshReport> done;
  };
  struct bucket {
    double tokens = status_burst;
    clock::time_point refilled{};
  };
  struct sample {
    std::uint64_t seq = 0;
    double rate = 0;
  };
  void finish(std::uint64_t id);
  void fill_rates(NodeReport& r, clock::time_point now);
  NodeReport make_report(clock::time_point now);

  node_context& ctx_;
  control_sender& control_;
  build_report build_;
  /// The I/O thread calls in; after the node stopped, report() may come from any
  /// thread: everything below is guarded.
  mutable std::mutex mu_;
  clock::time_point started_;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, pending> pending_;
  std::map<wire::node_id_bytes, bucket> buckets_;
  // The last sample of every stream ("<publisher hex>/<topic>") and when it was taken.
  std::unordered_map<std::string, sample> samples_;
  clock::time_point sampled_{};
};

}  // namespace meshbus::detail
