// history_log: the publisher's history on disk (Options::data_dir). The publisher
// side writes every drained I/O batch here in one transaction before any of it is
// sent (write-ahead: what a subscriber saw, the log holds); the outbound streams ask
// it for batches their bounded memory history let go of (repairs, late joiners,
// StartFrom); it applies retention and the interval policy's group commit from the
// loop's tick. A write the log refuses (a full disk or map) leaves the batches with
// the caller, who retries; a damaged record is reported and answered as a loss.
// I/O thread only.
#pragma once

#include <chrono>
#include <vector>

#include "lib/node/node_context.hpp"
#include "lib/node/outbox.hpp"
#include "lib/reliability/publisher_streams.hpp"
#include "lib/store/log_store.hpp"

namespace meshbus::detail {

class history_log final : public reliability::history_backing {
 public:
  history_log(node_context& ctx, store::log_store& store);

  /// Last sequence per topic of this epoch, for continuing the streams.
  std::vector<std::pair<std::string, std::uint64_t>> streams() const { return store_.last_sequences(); }
  /// Writes finished batches (their timestamp is `timestamp_ns`) in one transaction.
  /// False when the log refused them (counted and reported); nothing was written.
  bool write(const std::vector<outbox_batch>& batches, std::uint64_t timestamp_ns);
  /// Retention and the interval policy's syncs.
  void tick(clock::time_point now);
  clock::time_point next_due() const { return next_due_; }

  // reliability::history_backing
  std::vector<reliability::seq_range> fetch(std::string_view topic, std::uint64_t from, std::uint64_t to,
                                            std::size_t& budget,
                                            const std::function<void(transport::frame&&)>& send) override;

 private:
  node_context& ctx_;
  store::log_store& store_;
  std::vector<store::retention_rule> retention_;
  std::vector<store::history_batch> scratch_;
  clock::time_point next_retention_{};
  clock::time_point next_due_{};
};

}  // namespace meshbus::detail
