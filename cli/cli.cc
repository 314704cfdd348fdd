#include "cli/cli.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "cli/client.h"
#include "core/policy.h"
#include "json/json.h"
#include "replay/lookup.h"

namespace storeledger {
namespace {

constexpr char kUsage[] =
    R"(usage: storeledger [--db DIR] [--policy FILE] VERB [flags]
       storeledger --server HOST:PORT --token T [--tls-ca FILE] VERB [flags]

Writing:
  apply [FILE|-]                      apply JSON-line commands; one result per line
  simulate --stores N [--seed S]      a realistic migration along the article's timeline

Reading a store:
  state --store ID [--as-of T] [--position N | --known-at T]
  history [--store ID] [--order ID] [--product ID] [--withdrawal ID] [--type T]
          [--from T] [--to T] [--from-position N] [--limit N] [--include-rejections]
  explain --command-id ID             outcome, rule, events and the state before it
  diff --store ID --from T --to T [--position N | --known-at T]
  diff --store ID --at T --from-position N1 --to-position N2
  find ID                             what an id is and where it lives
  position-at T                       the last position recorded at or before T

Finance:
  postings [--store ID] [--from T] [--to T] [--position N | --known-at T]
           [--format csv|jsonl] [--yuan]
  balances [--as-of T] [--position N | --known-at T] [--format json|csv] [--yuan]
  statement --store ID [--pair] --from T --to T [--format csv|json] [--yuan] [--proofs]
  audit [--no-progress]               every check; exit 0 only when all hold
  digest                              {"position":N,"hash":HEX} of the head
  verify --digest N:HEX               exit 0 only if the log up to N hashes to HEX

Proofs (RFC 9162 Merkle tree; docs/finance.md):
  keygen --name LOG-NAME --out PREFIX writes PREFIX.key (Ed25519) and PREFIX.pub
  checkpoint --key PREFIX.key         sign and store the tree head; prints the note
  prove --position N [--tree-size M]  inclusion proof (JSON), against the latest
                                      checkpoint's tree unless --tree-size
  prove --consistency A [B]           consistency proof between tree sizes A and B
  verify-proof --key PREFIX.pub [--checkpoint NOTE | --old NOTE [--new NOTE]] PROOF
                                      exit 0 only if the proof holds

The log:
  export [--from-position N] [--format delimited|jsonl]
  tail --from-position N [--follow] [--format jsonl|delimited]
  rebuild [--shadow] [--flush-every N] [--no-progress]

The cluster (NATS JetStream; docs/cluster.md):
  consume --nats URL[,URL] [--partition N] --durable NAME --sqlite FILE
                                      exactly-once balances feed into SQLite
  publish --nats URL[,URL] [--partition N]
                                      this ledger into an empty partition stream
  backup --to DIR                     an online consistent copy of the database

--db defaults to ./storeledger-data. Times are RFC 3339 (2024-11-04T00:00:00+08:00)
or a date (2024-11-04: midnight in the ledger's zone). --tz ZONE (+08:00, UTC,
Asia/Shanghai) sets the zone human outputs print; default: the policy's, +08:00.
`storeledger VERB --help` describes every flag of VERB.
With --server the verbs apply, state, diff, history, explain, find, position-at,
digest, audit, tail, statement, postings, balances and backup go to storeledgerd;
its reads take --at-least P (a replica behind position P waits at most 2 s, then
answers UNAVAILABLE naming its position: docs/cluster.md).
)";

struct Verb {
  const char* name;
  int (*fn)(CliContext&);
};

constexpr Verb kVerbs[] = {
    {"apply", ApplyVerb},
    {"state", StateVerb},
    {"history", HistoryVerb},
    {"digest", DigestVerb},
    {"verify", VerifyVerb},
    {"export", ExportVerb},
    {"tail", TailVerb},
    {"simulate", SimulateVerb},
    {"postings", PostingsVerb},
    {"balances", BalancesVerb},
    {"statement", StatementVerb},
    {"audit", AuditVerb},
    {"rebuild", RebuildVerb},
    {"explain", ExplainVerb},
    {"diff", DiffVerb},
    {"find", FindVerb},
    {"position-at", PositionAtVerb},
    {"keygen", KeygenVerb},
    {"checkpoint", CheckpointVerb},
    {"prove", ProveVerb},
    {"verify-proof", VerifyProofVerb},
    {"consume", ConsumeVerb},
    {"publish", PublishVerb},
    {"backup", BackupVerb},
};

const std::vector<std::string> kBooleanFlags = {
    "follow", "shadow",      "include-rejections",
    "help",   "no-progress", "yuan",
    "pair",   "append",      "proofs"};

// The policy of --policy FILE, if given.
absl::StatusOr<std::optional<Policy>> PolicyFromFlag(const Flags& flags) {
  std::optional<std::string> path = flags.Get("policy");
  if (!path.has_value()) return std::optional<Policy>();
  std::ifstream file(*path);
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat("--policy ", *path, ": cannot read the file"));
  }
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<Policy> policy = ParsePolicyText(text.str());
  if (!policy.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--policy ", *path, ": ", policy.status().message()));
  }
  return std::optional<Policy>(*std::move(policy));
}

// --tz, else the policy's time_zone, else kLedgerZoneDefault.
absl::StatusOr<LedgerZone> ZoneFromFlags(const Flags& flags) {
  if (std::optional<std::string> tz = flags.Get("tz")) {
    absl::StatusOr<LedgerZone> zone = ResolveZone(*tz);
    if (!zone.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tz: ", zone.status().message()));
    }
    return zone;
  }
  ASSIGN_OR_RETURN(std::optional<Policy> policy, PolicyFromFlag(flags));
  return ResolveZone(policy.has_value() ? policy->time_zone() : "");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Ledger>> CliContext::OpenLedger(
    bool read_only) const {
  LedgerOptions options;
  options.read_only = read_only;
  options.clock = clock;
  ASSIGN_OR_RETURN(std::optional<Policy> policy, PolicyFromFlag(flags));
  if (policy.has_value()) options.policy = *std::move(policy);
  return Ledger::Open(flags.GetOr("db", "./storeledger-data"),
                      std::move(options));
}

int CliContext::Fail(const absl::Status& status) const {
  *err << "storeledger " << verb << ": " << status << "\n";
  return absl::IsInvalidArgument(status) ? kExitUsage : kExitCheckFailed;
}

absl::Status CliContext::CheckFlags() const {
  std::vector<std::string> known = DocumentedFlags(verb);
  if (flags.Has("server")) {
    known.insert(known.end(), {"server", "token", "tls-ca"});
    for (std::string& flag : DocumentedServerFlags(verb)) {
      known.push_back(std::move(flag));
    }
  }
  return flags.CheckKnown(known);
}

absl::StatusOr<std::optional<uint64_t>> CliContext::KnowledgePosition(
    const Ledger& ledger) const {
  return KnowledgePosition(
      [&](absl::Time t) { return PositionRecordedBy(ledger.log(), t); });
}

absl::StatusOr<CliContext::LedgerRead> CliContext::OpenLedgerForRead() const {
  LedgerRead read;
  ASSIGN_OR_RETURN(read.ledger, OpenLedger(true));
  ASSIGN_OR_RETURN(read.position, KnowledgePosition(*read.ledger));
  return read;
}

absl::StatusOr<std::optional<uint64_t>> CliContext::KnowledgePosition(
    const std::function<absl::StatusOr<uint64_t>(absl::Time)>& recorded_by)
    const {
  ASSIGN_OR_RETURN(std::optional<uint64_t> position, flags.GetUint("position"));
  ASSIGN_OR_RETURN(std::optional<absl::Time> known_at,
                   flags.GetTime("known-at"));
  if (position.has_value() && known_at.has_value()) {
    return absl::InvalidArgumentError(
        "give --position N or --known-at T, not both");
  }
  if (!known_at.has_value()) return position;
  ASSIGN_OR_RETURN(uint64_t at, recorded_by(*known_at));
  *err << "storeledger " << verb << ": --known-at " << *flags.Get("known-at")
       << " = "
       << absl::FormatTime(absl::RFC3339_full, *known_at, absl::UTCTimeZone())
       << " = position " << at << "\n";
  return std::optional<uint64_t>(at);
}

void CliContext::EchoTime(absl::string_view flag) const {
  std::optional<std::string> written = flags.Get(flag);
  absl::StatusOr<std::optional<absl::Time>> t = flags.GetTime(flag);
  if (!written.has_value() || !t.ok() || !t->has_value()) return;
  *err << "storeledger " << verb << ": --" << flag << " " << *written << " = "
       << absl::FormatTime(absl::RFC3339_full, **t, absl::UTCTimeZone())
       << "\n";
}

void CliContext::SayNothingMatched(absl::string_view what) const {
  *err << "storeledger " << verb << ": nothing matched: " << what << "\n";
}

int RunCli(const std::vector<std::string>& args, std::istream& in,
           std::ostream& out, std::ostream& err, const Clock* clock) {
  absl::StatusOr<Flags> flags = Flags::Parse(args, kBooleanFlags);
  if (!flags.ok()) {
    err << "storeledger: " << flags.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (flags->Has("help") && !flags->positional().empty() &&
      PrintVerbHelp(flags->positional().front(), out)) {
    return kExitOk;
  }
  if (flags->positional().empty() || flags->Has("help")) {
    (flags->Has("help") ? out : err) << kUsage;
    return flags->Has("help") ? kExitOk : kExitUsage;
  }
  absl::StatusOr<LedgerZone> zone = ZoneFromFlags(*flags);
  if (!zone.ok()) {
    err << "storeledger: " << zone.status().message() << "\n";
    return kExitUsage;
  }
  flags->set_zone(zone->zone);
  CliContext ctx{flags->positional().front(),
                 *std::move(flags),
                 &in,
                 &out,
                 &err,
                 clock,
                 *std::move(zone)};
  // storeledger --server ADDR --token T VERB: through storeledgerd
  // (cli/client.h).
  if (ctx.flags.Has("server")) return RunRemoteVerb(ctx);
  for (const Verb& verb : kVerbs) {
    if (ctx.verb == verb.name) return verb.fn(ctx);
  }
  err << "storeledger: unknown verb '" << ctx.verb << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace storeledger
