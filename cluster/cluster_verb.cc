#include "cluster/cluster_verb.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "cluster/placement.h"
#include "replication/jetstream.h"

namespace storeledger {
namespace {

constexpr char kClusterUsage[] =
    R"(usage: storeledger cluster init --nats URL[,URL...] --partitions P [--replicas R]
       storeledger cluster status --nats URL[,URL...]

init creates a partitioned cluster on those NATS JetStream servers: P
partitions, fixed from then on (docs/cluster.md "Partitions"). --replicas:
copies JetStream keeps of the cluster's buckets (default 3 with 3 URLs or
more, else 1). status prints the partitions and each partition's leader.
)";

int Usage(std::ostream& err, absl::string_view why) {
  err << "storeledger cluster: " << why << "\n" << kClusterUsage;
  return kExitUsage;
}

int Fail(std::ostream& err, const absl::Status& status) {
  err << "storeledger cluster: " << status << "\n";
  return kExitCheckFailed;
}

}  // namespace

int RunClusterVerb(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  // `storeledger cluster --help`, `storeledger cluster init --help`: the
  // usage on stdout, exit 0, as every verb's --help.
  if (std::find(args.begin(), args.end(), "--help") != args.end()) {
    out << kClusterUsage;
    return kExitOk;
  }
  if (args.empty() || (args.front() != "init" && args.front() != "status")) {
    return Usage(err, "the first word must be init or status");
  }
  const std::string what = args.front();
  absl::StatusOr<Flags> flags =
      Flags::Parse(std::vector<std::string>(args.begin() + 1, args.end()), {});
  if (!flags.ok()) return Usage(err, flags.status().message());
  if (absl::Status s = flags->CheckKnown({"nats", "partitions", "replicas"});
      !s.ok() || !flags->positional().empty()) {
    return Usage(err, s.ok()
                          ? "unexpected argument " + flags->positional().front()
                          : std::string(s.message()));
  }
  std::optional<std::string> nats = flags->Get("nats");
  if (!nats.has_value()) return Usage(err, "--nats URL is required");
  const std::vector<std::string> urls =
      absl::StrSplit(*nats, ',', absl::SkipEmpty());
  absl::StatusOr<std::optional<uint64_t>> partitions =
      flags->GetUint("partitions");
  absl::StatusOr<std::optional<uint64_t>> replicas = flags->GetUint("replicas");
  if (!partitions.ok()) return Usage(err, partitions.status().message());
  if (!replicas.ok()) return Usage(err, replicas.status().message());
  absl::StatusOr<std::unique_ptr<JetStream>> js = JetStream::Connect(urls);
  if (!js.ok()) return Fail(err, js.status());

  if (what == "init") {
    if (!partitions->has_value())
      return Usage(err, "--partitions P is required");
    if (**partitions < 1 || **partitions > kPartitionsMax) {
      return Usage(err,
                   absl::StrCat("--partitions must be 1..", kPartitionsMax));
    }
    const int copies =
        static_cast<int>(replicas->value_or(urls.size() >= 3 ? 3 : 1));
    absl::StatusOr<uint32_t> made =
        InitCluster(**js, static_cast<uint32_t>(**partitions), copies);
    if (!made.ok()) return Fail(err, made.status());
    out << "cluster: " << *made << " partitions (H(merchant id) mod " << *made
        << ", H = first 8 bytes of SHA-256, big-endian)\n";
    return kExitOk;
  }
  absl::StatusOr<std::optional<uint32_t>> stored = ClusterPartitions(**js);
  if (!stored.ok()) return Fail(err, stored.status());
  if (!stored->has_value()) {
    return Fail(err, absl::NotFoundError(
                         "no partitioned cluster here: run `storeledger "
                         "cluster init` first"));
  }
  out << "cluster: " << **stored << " partitions\n";
  for (uint32_t p = 0; p < **stored; ++p) {
    absl::StatusOr<std::optional<std::string>> leader =
        (*js)->KvGet(kLeaderBucket, LeaseKey(p));
    out << "partition " << p << ": leader "
        << (absl::IsNotFound(leader.status()) ? std::string("none")
            : !leader.ok()        ? std::string(leader.status().message())
            : leader->has_value() ? **leader
                                  : std::string("none"))
        << "\n";
  }
  return kExitOk;
}

}  // namespace storeledger
