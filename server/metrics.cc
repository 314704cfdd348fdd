#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace storeledger {
namespace {

// Latency buckets in seconds: 50 us (a cached read) to 10 s (an audit).
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
}

// Group sizes: 1 up to kGroupCommandsMax (1000).
prometheus::Histogram::BucketBoundaries GroupBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000};
}

}  // namespace

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()) {
  commands_ = &prometheus::BuildCounter()
                   .Name("storeledger_commands_total")
                   .Help("Commands executed, by outcome and deciding rule")
                   .Register(*registry_);
  read_seconds_ = &prometheus::BuildHistogram()
                       .Name("storeledger_read_seconds")
                       .Help("Wall time of reads, by endpoint")
                       .Register(*registry_);
  group_commands_ = &prometheus::BuildHistogram()
                         .Name("storeledger_group_commit_commands")
                         .Help("Commands per group commit")
                         .Register(*registry_)
                         .Add({}, GroupBuckets());
  group_write_seconds_ = &prometheus::BuildHistogram()
                              .Name("storeledger_group_write_seconds")
                              .Help(
                                  "Wall time of one group's write (with "
                                  "its sync unless deferred)")
                              .Register(*registry_)
                              .Add({}, LatencyBuckets());
  sync_seconds_ = &prometheus::BuildHistogram()
                       .Name("storeledger_sync_seconds")
                       .Help(
                           "Wall time of one WAL sync covering groups "
                           "written unsynced")
                       .Register(*registry_)
                       .Add({}, LatencyBuckets());
  append_seconds_ = &prometheus::BuildHistogram()
                         .Name("storeledger_append_seconds")
                         .Help(
                             "Wall time from a command's arrival to its "
                             "durable result")
                         .Register(*registry_)
                         .Add({}, LatencyBuckets());
  head_position_ = &prometheus::BuildGauge()
                        .Name("storeledger_log_head_position")
                        .Help("Global position of the log's last event")
                        .Register(*registry_)
                        .Add({});
  subscribers_ = &prometheus::BuildGauge()
                      .Name("storeledger_subscribers")
                      .Help("Live Subscribe calls")
                      .Register(*registry_)
                      .Add({});
  subscriber_lag_ = &prometheus::BuildGauge()
                         .Name("storeledger_subscriber_lag_events_max")
                         .Help(
                             "Events between the head and the slowest live "
                             "subscriber")
                         .Register(*registry_)
                         .Add({});
}

struct ServerMetrics::Replication {
  prometheus::Family<prometheus::Gauge>* info;
  prometheus::Family<prometheus::Gauge>* role;
  prometheus::Gauge* stream_sequence;
  prometheus::Gauge* stream_last_sequence;
  prometheus::Gauge* lag_messages;
  prometheus::Gauge* unpublished_events;
  prometheus::Gauge* data_loss;
  prometheus::Gauge* diverged_records;
};

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::RenderReplication(const ReplicationGauges& gauges) {
  std::lock_guard<std::mutex> lock(replication_mu_);
  if (replication_ == nullptr) {
    auto gauge = [&](const char* name, const char* help) {
      return &prometheus::BuildGauge()
                  .Name(name)
                  .Help(help)
                  .Register(*registry_)
                  .Add({});
    };
    replication_ = std::make_unique<Replication>();
    Replication& r = *replication_;
    r.info = &prometheus::BuildGauge()
                  .Name("storeledger_replication_info")
                  .Help(
                      "1, labelled with this replica's partition, --ack "
                      "and --follow-only")
                  .Register(*registry_);
    r.role = &prometheus::BuildGauge()
                  .Name("storeledger_replication_role")
                  .Help(
                      "1 for this replica's role (follower, leader, "
                      "deposed), 0 for the others")
                  .Register(*registry_);
    r.stream_sequence =
        gauge("storeledger_replication_stream_sequence",
              "Last message of the partition stream applied or published here");
    r.stream_last_sequence =
        gauge("storeledger_replication_stream_last_sequence",
              "The partition stream's last sequence, as last seen");
    r.lag_messages =
        gauge("storeledger_replication_lag_messages",
              "Stream messages not yet applied here (a follower behind)");
    r.unpublished_events =
        gauge("storeledger_replication_unpublished_events",
              "Events stored here and not yet in the stream (--ack local lag)");
    r.data_loss = gauge("storeledger_replication_data_loss",
                        "1 when a follower stopped at a message that failed "
                        "a check (DATA_LOSS): it applies nothing past it");
    r.diverged_records =
        gauge("storeledger_replication_diverged_records",
              "Tails of this replica's log moved aside as diverged records");
    r.info
        ->Add({{"partition", std::to_string(gauges.partition)},
               {"ack", gauges.ack},
               {"follow_only", gauges.follow_only ? "true" : "false"}})
        .Set(1);
  }
  Replication& r = *replication_;
  for (const char* role : {"follower", "leader", "deposed"}) {
    r.role->Add({{"role", role}}).Set(gauges.role == role ? 1 : 0);
  }
  r.stream_sequence->Set(static_cast<double>(gauges.stream_sequence));
  r.stream_last_sequence->Set(static_cast<double>(gauges.stream_last_sequence));
  r.lag_messages->Set(static_cast<double>(
      gauges.stream_last_sequence > gauges.stream_sequence
          ? gauges.stream_last_sequence - gauges.stream_sequence
          : 0));
  r.unpublished_events->Set(static_cast<double>(gauges.unpublished_events));
  r.data_loss->Set(gauges.data_loss ? 1 : 0);
  r.diverged_records->Set(static_cast<double>(gauges.diverged_records));
}

void ServerMetrics::CountCommand(const v1::CommandResult& result) {
  commands_
      ->Add({{"outcome", v1::OutcomeStatus_Name(result.status())},
             {"rule", result.rule()}})
      .Increment();
}

void ServerMetrics::CountCommandError() {
  commands_->Add({{"outcome", "ERROR"}, {"rule", ""}}).Increment();
}

void ServerMetrics::ObserveAppend(absl::Duration duration) {
  append_seconds_->Observe(absl::ToDoubleSeconds(duration));
}

void ServerMetrics::ObserveRead(absl::string_view endpoint,
                                absl::Duration duration) {
  read_seconds_->Add({{"endpoint", std::string(endpoint)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(duration));
}

void ServerMetrics::OnGroupDecided(size_t commands) {
  group_commands_->Observe(static_cast<double>(commands));
}

void ServerMetrics::OnGroupWritten(absl::Duration duration) {
  group_write_seconds_->Observe(absl::ToDoubleSeconds(duration));
}

void ServerMetrics::OnSynced(absl::Duration duration) {
  sync_seconds_->Observe(absl::ToDoubleSeconds(duration));
}

std::string ServerMetrics::Render(const MetricsGauges& gauges) {
  head_position_->Set(static_cast<double>(gauges.head_position));
  subscribers_->Set(static_cast<double>(gauges.subscribers));
  subscriber_lag_->Set(static_cast<double>(gauges.subscriber_lag_events_max));
  if (gauges.replication.has_value()) RenderReplication(*gauges.replication);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace storeledger
