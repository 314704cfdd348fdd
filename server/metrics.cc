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
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    10};
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
                              .Help("Wall time of one group's write (with "
                                    "its sync unless deferred)")
                              .Register(*registry_)
                              .Add({}, LatencyBuckets());
  sync_seconds_ = &prometheus::BuildHistogram()
                       .Name("storeledger_sync_seconds")
                       .Help("Wall time of one WAL sync covering groups "
                             "written unsynced")
                       .Register(*registry_)
                       .Add({}, LatencyBuckets());
  append_seconds_ = &prometheus::BuildHistogram()
                         .Name("storeledger_append_seconds")
                         .Help("Wall time from a command's arrival to its "
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
                         .Help("Events between the head and the slowest live "
                               "subscriber")
                         .Register(*registry_)
                         .Add({});
}

ServerMetrics::~ServerMetrics() = default;

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
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace storeledger
