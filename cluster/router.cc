// The router of a partitioned cluster (cluster/router.h); which call goes
// where is docs/cluster.md "Routing".
//
// A batch runs in segments: each partition's commands of a segment in
// order, the partitions at once. A segment ends before an applyPolicy and
// before a command that creates a store the segment already creates (which
// partition holds it is known only once the first has run).
//
// Store id -> partition answers are kept once found (entries never move).

#include "cluster/router.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/address.h"
#include "base/status_macros.h"
#include "cluster/placement.h"
#include "core/decide.h"
#include "grpcpp/grpcpp.h"
#include "ledger/store_directory.h"

namespace storeledger {
namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

// Worth sending again to the leader as the lease then names it: no leader
// (yet), a deposed one, a connection that broke. Executing twice is safe:
// command ids.
bool Retryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

void AddMetadata(grpc::ClientContext* context,
                 const std::string& authorization) {
  PrepareRoutedCall(context, authorization);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(kRoutedCallTimeout));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Router>> Router::Connect(RouterOptions options) {
  ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js,
                   JetStream::Connect(options.nats_urls));
  ASSIGN_OR_RETURN(std::optional<uint32_t> partitions, ClusterPartitions(*js));
  if (!partitions.has_value()) {
    return absl::FailedPreconditionError(
        "no partitioned cluster on these NATS servers: run `storeledger "
        "cluster init --nats URL --partitions P` first");
  }
  if (options.partition >= *partitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition ", options.partition, ": the cluster has ",
                     *partitions, " partitions (0..", *partitions - 1, ")"));
  }
  if (!options.leads) options.leads = [] { return false; };
  return std::unique_ptr<Router>(
      new Router(std::move(options), std::move(js), *partitions));
}

absl::StatusOr<std::optional<uint32_t>> Router::StorePartition(
    absl::string_view store_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = placed_.find(store_id); it != placed_.end()) {
      return it->second;
    }
  }
  ASSIGN_OR_RETURN(std::optional<uint32_t> placed,
                   PlacedPartition(*js_, store_id));
  if (placed.has_value()) {
    if (*placed >= partitions_) {
      return absl::DataLossError(absl::StrCat("the store directory places ",
                                              store_id, " in partition ",
                                              *placed, " of ", partitions_));
    }
    std::lock_guard<std::mutex> lock(mu_);
    placed_.emplace(store_id, *placed);
  }
  return placed;
}

absl::StatusOr<uint32_t> Router::PartitionOf(const v1::Command& command,
                                             BatchStores* batch) {
  switch (command.body_case()) {
    case v1::Command::kApplyPolicy:
      return kAllPartitions;
    case v1::Command::kOpenStore: {
      const uint32_t p =
          PartitionOfMerchant(command.open_store().merchant_id(), partitions_);
      batch->opened.emplace(command.open_store().store_id(), p);
      return p;
    }
    case v1::Command::kRegisterIndividualBusiness:
      return PartitionOfMerchant(
          command.register_individual_business().merchant_id(), partitions_);
    default:
      break;
  }
  const std::vector<std::string> store_ids = StoreIdsOf(command);
  if (store_ids.empty()) {
    return static_cast<uint32_t>(PlacementHash(command.command_id()) %
                                 partitions_);
  }
  const std::string& store_id = store_ids.front();
  // The directory first (a store placed before this batch is there, even
  // when a command of the batch opens the id again); asked once a batch.
  std::optional<uint32_t> placed;
  if (!batch->unplaced.contains(store_id)) {
    ASSIGN_OR_RETURN(placed, StorePartition(store_id));
    if (!placed.has_value()) batch->unplaced.insert(store_id);
  }
  uint32_t p;
  if (placed.has_value()) {
    p = *placed;
  } else if (auto it = batch->opened.find(store_id);
             it != batch->opened.end()) {
    p = it->second;
  } else {
    p = static_cast<uint32_t>(PlacementHash(store_id) % partitions_);
  }
  if (command.has_upgrade_store()) {
    batch->opened.emplace(command.upgrade_store().target_store_id(), p);
  }
  return p;
}

ClusterRouter::Results Router::Execute(std::vector<v1::Command> commands,
                                       const std::string& authorization,
                                       const LocalBatch& local) {
  Results results(commands.size(),
                  absl::CancelledError("not executed: a command before it "
                                       "failed"));
  BatchStores stores;
  bool failed = false;
  // A segment: commands routed on what was known before it ran, each
  // partition's in order, the partitions at once.
  std::map<uint32_t, std::vector<size_t>> segment;
  auto run_segment = [&] {
    std::vector<std::thread> threads;
    std::mutex results_mu;
    for (auto& [p, indexes] : segment) {
      threads.emplace_back([&, p = p, &indexes = indexes] {
        std::vector<v1::Command> batch;
        for (size_t i : indexes) batch.push_back(commands[i]);
        Results got = RunOn(p, std::move(batch), authorization, local);
        std::lock_guard<std::mutex> lock(results_mu);
        for (size_t k = 0; k < indexes.size(); ++k) {
          if (!got[k].ok()) failed = true;
          if (got[k].ok()) got[k]->set_partition(p);
          results[indexes[k]] = std::move(got[k]);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    segment.clear();
    stores = BatchStores();
  };
  for (size_t i = 0; i < commands.size() && !failed; ++i) {
    const v1::Command& command = commands[i];
    // A store id this segment creates already, created again: which
    // partition holds it is known only once the first has run.
    if (const std::string* created = CreatedStoreId(command);
        created != nullptr && stores.opened.contains(*created)) {
      run_segment();
      if (failed) break;
    }
    if (!command.has_apply_policy()) {
      absl::StatusOr<uint32_t> p = PartitionOf(command, &stores);
      if (!p.ok()) {
        results[i] = p.status();
        failed = true;
        break;
      }
      segment[*p].push_back(i);
      continue;
    }
    // applyPolicy: after everything before it, in every partition, the
    // same command.
    run_segment();
    if (failed) break;
    std::vector<absl::StatusOr<v1::CommandResult>> each(
        partitions_, absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (uint32_t p = 0; p < partitions_; ++p) {
      threads.emplace_back([&, p] {
        Results got = RunOn(p, {command}, authorization, local);
        each[p] = std::move(got.front());
      });
    }
    for (std::thread& t : threads) t.join();
    std::vector<v1::CommandResult> answers;
    for (uint32_t p = 0; p < partitions_ && !failed; ++p) {
      if (!each[p].ok()) {
        results[i] = each[p].status();
        failed = true;
        break;
      }
      each[p]->set_partition(p);
      answers.push_back(*std::move(each[p]));
    }
    if (!failed) results[i] = MergePartitionResults(std::move(answers));
  }
  if (!failed) run_segment();
  return results;
}

ClusterRouter::Results Router::RunOn(uint32_t partition,
                                     std::vector<v1::Command> commands,
                                     const std::string& authorization,
                                     const LocalBatch& local) {
  const size_t n = commands.size();
  Results out(n, absl::CancelledError(
                     "not executed: a command before it in its partition "
                     "failed"));
  const absl::Time deadline = absl::Now() + options_.retry_for;
  size_t done = 0;
  while (true) {
    std::vector<v1::Command> rest(commands.begin() + done, commands.end());
    Results got = partition == options_.partition && options_.leads()
                      ? local(std::move(rest))
                      : Remote(partition, rest, authorization);
    size_t i = 0;
    for (; i < got.size() && done + i < n && got[i].ok(); ++i) {
      out[done + i] = std::move(got[i]);
    }
    done += i;
    if (done == n) return out;
    const absl::Status why = i < got.size() ? got[i].status()
                                            : absl::UnavailableError(
                                                  "the leader answered fewer "
                                                  "results than commands");
    if (!Retryable(why) || absl::Now() + kRouteRetryInterval > deadline) {
      out[done] = absl::Status(why.code(), absl::StrCat("partition ", partition,
                                                        ": ", why.message()));
      return out;
    }
    absl::SleepFor(kRouteRetryInterval);
  }
}

ClusterRouter::Results Router::Remote(uint32_t partition,
                                      const std::vector<v1::Command>& commands,
                                      const std::string& authorization) {
  absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> stub =
      LeaderStub(partition);
  if (!stub.ok()) return {stub.status()};
  if (commands.size() == 1) {
    grpc::ClientContext context;
    AddMetadata(&context, authorization);
    v1::CommandResult result;
    grpc::Status s = (*stub)->Execute(&context, commands.front(), &result);
    if (!s.ok()) return {FromGrpc(s)};
    return {std::move(result)};
  }
  grpc::ClientContext context;
  AddMetadata(&context, authorization);
  std::unique_ptr<
      grpc::ClientReaderWriterInterface<v1::Command, v1::CommandResult>>
      stream = (*stub)->ExecuteStream(&context);
  std::thread writer([&] {
    for (const v1::Command& command : commands) {
      if (!stream->Write(command)) break;
    }
    stream->WritesDone();
  });
  Results got;
  v1::CommandResult result;
  while (got.size() < commands.size() && stream->Read(&result)) {
    got.push_back(std::move(result));
    result.Clear();
  }
  if (got.size() < commands.size()) context.TryCancel();
  writer.join();
  const grpc::Status finished = stream->Finish();
  if (got.size() < commands.size()) {
    got.push_back(finished.ok() ? absl::UnavailableError(
                                      "the stream ended before every result")
                                : FromGrpc(finished));
  }
  return got;
}

absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> Router::LeaderStub(
    uint32_t partition) {
  ASSIGN_OR_RETURN(std::optional<std::string> leader,
                   js_->KvGet(kLeaderBucket, LeaseKey(partition)));
  if (!leader.has_value() || leader->empty()) {
    return absl::UnavailableError(
        absl::StrCat("partition ", partition, " has no leader right now"));
  }
  Channel to;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto known = channels_.find(*leader);
    if (known == channels_.end()) {
      // Checked once per address, when its channel is made.
      if (options_.peer_credentials == nullptr) {
        absl::StatusOr<std::pair<std::string, int>> host =
            SplitHostPort("the lease's address", *leader);
        if (!host.ok() || !IsLoopbackHost(host->first)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "partition ", partition, "'s leader is at ", *leader,
              ", not a loopback address: a routed call carries its caller's "
              "token, so it goes there only over TLS (storeledgerd "
              "--peer-ca)"));
        }
      }
      Channel made;
      made.channel =
          ReplicaChannel(*leader, options_.peer_credentials != nullptr
                                      ? options_.peer_credentials
                                      : grpc::InsecureChannelCredentials());
      made.stub = v1::Ledger::NewStub(made.channel);
      known = channels_.emplace(*leader, std::move(made)).first;
    }
    to = known->second;
  }
  if (!AwaitReplica(*to.channel, kReplicaConnectWait)) {
    return absl::UnavailableError(absl::StrCat(
        "partition ", partition, ": its leader ", *leader,
        " did not answer within ", absl::FormatDuration(kReplicaConnectWait)));
  }
  return to.stub;
}

absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> Router::StoreReader(
    absl::string_view store_id) {
  ASSIGN_OR_RETURN(std::optional<uint32_t> placed, StorePartition(store_id));
  if (!placed.has_value()) return nullptr;
  return PartitionReader(*placed);
}

absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>>
Router::PartitionReader(uint32_t partition) {
  if (partition >= partitions_) {
    return absl::InvalidArgumentError(absl::StrCat("partition ", partition,
                                                   ": the cluster has ",
                                                   partitions_, " partitions"));
  }
  if (partition == options_.partition) return nullptr;
  return LeaderStub(partition);
}

v1::CommandResult MergePartitionResults(
    std::vector<v1::CommandResult> results) {
  v1::CommandResult merged;
  if (results.empty()) return merged;
  merged = results.front();
  merged.clear_first_position();
  merged.clear_last_position();
  merged.clear_partition();
  merged.clear_partition_results();
  bool all_replayed = true;
  bool same_message = true;
  bool rejected = false;
  std::vector<std::string> messages;
  for (const v1::CommandResult& r : results) {
    all_replayed &= r.replayed();
    same_message &= r.message() == results.front().message();
    if (!r.message().empty()) {
      messages.push_back(absl::StrCat("p", r.partition(), ": ", r.message()));
    }
    if (r.status() == v1::REJECTED && !rejected) {
      rejected = true;
      merged.set_status(r.status());
      merged.set_rule(r.rule());
      merged.set_code(r.code());
    }
  }
  merged.set_replayed(all_replayed);
  if (!same_message) merged.set_message(absl::StrJoin(messages, "; "));
  for (v1::CommandResult& r : results) {
    *merged.add_partition_results() = std::move(r);
  }
  return merged;
}

}  // namespace storeledger
