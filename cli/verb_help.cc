// Per-verb help: one table of every verb's flags. The embedded verbs accept
// exactly the flags listed here (CliContext::CheckFlags), so the help cannot
// fall behind the parsing; with --server, also the flags of ServerFlags().
// The global flags (--db, --policy, --tz, --server, --token, --tls-ca) are
// in the general usage.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/cli.h"

namespace storeledger {
namespace {

struct FlagHelp {
  const char* name;   // without "--"
  const char* value;  // "" for a boolean flag
  const char* text;
};

struct VerbHelp {
  const char* name;
  const char* synopsis;
  const char* text;
  std::vector<FlagHelp> flags;
};

// Shared wording.
constexpr char kTimeValue[] = "T";
constexpr char kKnownAt[] =
    "what the ledger knew at time T: the last position recorded at or before "
    "T (see position-at); not with --position";
constexpr char kYuan[] =
    "amounts in yuan with two decimals (columns *_yuan) instead of fen";

const std::vector<VerbHelp>& Verbs() {
  static const std::vector<VerbHelp>* verbs = new std::vector<VerbHelp>{
      {"apply",
       "apply [FILE|-]",
       "Applies JSON-line commands (FILE, or stdin); one JSON result per "
       "input line. Exit 2 if any line was INVALID.",
       {}},
      {"simulate",
       "simulate --stores N [--seed S] [--append]",
       "A realistic migration along the article's timeline, through the same "
       "path as apply. recordedAt follows the simulated timeline (a few "
       "seconds after each occurredAt). The summary's amounts are in yuan.",
       {{"stores", "N", "how many legacy stores (1..200000); required"},
        {"seed", "S", "the plan's seed (default 1): same seed, same log"},
        {"append", "", "simulate into a ledger that already has events"},
        {"no-progress", "", "no progress line on a terminal"}}},
      {"state",
       "state --store ID [--as-of T] [--position N | --known-at T]",
       "The store as JSON (StoreState, times in UTC).",
       {{"store", "ID", "the store; required"},
        {"as-of", kTimeValue,
         "business time: only events that occurred at or before T"},
        {"position", "N", "knowledge: only events at positions <= N"},
        {"known-at", kTimeValue, kKnownAt}}},
      {"history",
       "history [--store ID] [filters]",
       "Events as JSON lines, each with its global position. Without --store, "
       "--order or --withdrawal finds the store that owns the id, --product "
       "every store that has a product of that id (ids are per store). "
       "A product sync shows in both the legacy store's and the WeChat "
       "Store's history.",
       {{"store", "ID",
         "the store (optional with --order/--withdrawal/--product)"},
        {"order", "ID", "only events about this order"},
        {"product", "ID", "only events naming this product"},
        {"withdrawal", "ID", "only events about this withdrawal"},
        {"type", "T1,T2", "only these event types (facts only)"},
        {"from", kTimeValue, "business time >= T"},
        {"to", kTimeValue, "business time <= T"},
        {"from-position", "N", "positions > N"},
        {"limit", "N", "at most N lines"},
        {"include-rejections", "",
         "also the refused commands naming the store"}}},
      {"explain",
       "explain --command-id ID",
       "A command's outcome, deciding rule, events, and the touched stores "
       "just before it. With --server on a partitioned cluster: from the "
       "partition holding the command (outcome.partition); --partition N "
       "for an applyPolicy, which is in each.",
       {{"command-id", "ID", "the command; required"}}},
      {"diff",
       "diff --store ID (--from T1 --to T2 [--position N | --known-at T] | "
       "--at T --from-position N1 --to-position N2)",
       "What changed in a store: between two business times as known at one "
       "position, or between two positions at one business time.",
       {{"store", "ID", "the store; required"},
        {"from", kTimeValue, "the earlier business time"},
        {"to", kTimeValue, "the later business time"},
        {"position", "N", "both sides as known at position N"},
        {"known-at", kTimeValue, kKnownAt},
        {"at", kTimeValue, "one business time for both sides (with positions)"},
        {"from-position", "N", "the earlier knowledge position"},
        {"to-position", "N", "the later knowledge position"}}},
      {"find",
       "find ID",
       "What an id names (store, merchant, product, order, withdrawal, "
       "command) and where it lives, as JSON. Exit 1 if nothing.",
       {}},
      {"position-at",
       "position-at T",
       "The last position recorded at or before T, as JSON.",
       {}},
      {"postings",
       "postings [--store ID] [--from T] [--to T] [--position N | --known-at "
       "T] "
       "[--format csv|jsonl] [--yuan]",
       "Every double-entry posting with its event type and store kind. The "
       "CSV starts with a # line naming the position it is as of and the "
       "zone its times are in.",
       {{"store", "ID", "only this store's postings"},
        {"from", kTimeValue, "business time >= T"},
        {"to", kTimeValue, "business time < T"},
        {"position", "N", "only events at positions <= N"},
        {"known-at", kTimeValue, kKnownAt},
        {"format", "csv|jsonl", "default csv; jsonl keeps UTC and fen"},
        {"yuan", "", kYuan}}},
      {"balances",
       "balances [--as-of T] [--position N | --known-at T] [--format json|csv] "
       "[--yuan]",
       "Every store's balances and the totals per store kind (legacy and new "
       "never summed).",
       {{"as-of", kTimeValue, "business time: events that occurred by T"},
        {"position", "N", "only events at positions <= N"},
        {"known-at", kTimeValue, kKnownAt},
        {"format", "json|csv", "default json (fen)"},
        {"yuan", "", kYuan}}},
      {"statement",
       "statement --store ID [--pair] --from T --to T [--format csv|json] "
       "[--yuan] [--proofs]",
       "Opening balances, postings, movements and closing over [from, to). "
       "--pair: the legacy store and the WeChat Store it became, side by "
       "side, never summed.",
       {{"store", "ID", "the store; required"},
        {"pair", "", "also the store it upgraded into (or from)"},
        {"from", kTimeValue, "period start (inclusive); required"},
        {"to", kTimeValue, "period end (exclusive); required"},
        {"format", "csv|json", "default csv"},
        {"yuan", "", kYuan},
        {"proofs", "",
         "one JSON line per posting with its inclusion proof against the "
         "latest signed checkpoint (docs/finance.md)"}}},
      {"audit",
       "audit [--no-progress]",
       "Every check of the log and projections; JSON report; exit 1 naming "
       "each violation. With --server on a partitioned cluster: a report "
       "per partition, then {\"partitions\":P,...,\"failed\":[...]}; exit "
       "1 naming each partition that failed or did not answer; --partition "
       "N audits one.",
       {{"no-progress", "", "no progress line on a terminal"}}},
      {"digest",
       "digest",
       "{\"position\":N,\"hash\":HEX} of the head. With --server on a "
       "partitioned cluster: a line per partition, then "
       "{\"partitions\":P,\"events\":N,...}; --partition N asks one.",
       {}},
      {"verify",
       "verify --digest N:HEX",
       "Exit 0 only if the log up to N still hashes to HEX.",
       {{"digest", "N:HEX", "as printed by digest; required"}}},
      {"export",
       "export [--from-position N] [--format delimited|jsonl]",
       "The envelopes after N.",
       {{"from-position", "N", "positions > N (default 0)"},
        {"format", "delimited|jsonl",
         "default delimited (varint-length-prefixed protobuf)"}}},
      {"keygen",
       "keygen --name LOG-NAME --out PREFIX",
       "Makes an Ed25519 signing key for checkpoints: PREFIX.key (mode 0600) "
       "and PREFIX.pub, which an outside auditor verifies with; prints the "
       "public key. Refuses files that exist.",
       {{"name", "LOG-NAME",
         "the log's name, signed into every checkpoint; "
         "required"},
        {"out", "PREFIX",
         "where to write PREFIX.key and PREFIX.pub; "
         "required"}}},
      {"checkpoint",
       "checkpoint --key PREFIX.key",
       "Signs the Merkle tree head of the log (its size and root) and stores "
       "it; prints the signed note (docs/finance.md).",
       {{"key", "FILE", "the signing key keygen wrote; required"}}},
      {"prove",
       "prove --position N [--tree-size M] | prove --consistency A [B]",
       "A proof as JSON: that the envelope at position N is in the tree of "
       "the latest signed checkpoint (or of size M), or that the tree of "
       "size A is a prefix of the tree of size B (default: the latest "
       "checkpoint's).",
       {{"position", "N", "inclusion proof of the envelope at N"},
        {"tree-size", "M", "against the tree of size M (with --position)"},
        {"consistency", "A", "consistency proof from tree size A to B"}}},
      {"verify-proof",
       "verify-proof --key PREFIX.pub [--checkpoint NOTE | --old NOTE "
       "[--new NOTE]] PROOF",
       "Checks a proof file of prove with no access to the ledger; exit 0 "
       "only if it holds, 1 if it does not.",
       {{"key", "FILE", "the log's public key (PREFIX.pub); required"},
        {"checkpoint", "NOTE",
         "a signed note to check an inclusion proof against"},
        {"old", "NOTE", "the first signed note of a consistency proof"},
        {"new", "NOTE", "the second signed note of a consistency proof"}}},
      {"tail",
       "tail --from-position N [--follow] [--format jsonl|delimited] "
       "[--max-events N] [--idle-exit-ms MS] [--poll-ms MS]",
       "The downstream feed: every event after position N, in order. A "
       "position past the head is an error (exit 1) without --follow, and a "
       "warning on stderr with it.",
       {{"from-position", "N", "the last position the consumer saw; required"},
        {"follow", "", "wait for new events"},
        {"format", "jsonl|delimited", "default jsonl"},
        {"max-events", "N", "stop after N events"},
        {"idle-exit-ms", "MS",
         "with --follow: stop after MS without events (not with --server)"},
        {"poll-ms", "MS",
         "with --follow: between polls (default 200; not with --server)"}}},
      {"consume",
       "consume --nats URL[,URL] [--partition N] --durable NAME --sqlite FILE "
       "[--batch N] [--ack-wait-ms MS] [--max-messages N] [--idle-exit-ms MS]",
       "The reference downstream consumer (docs/cluster.md \"Write your own "
       "projection\"): a JetStream durable pull consumer of the partition's "
       "log that applies each message, checked as a follower checks it, to "
       "SQLite tables of balances per store and per kind, with the stream "
       "sequence in the same transaction, and double-acks only after the "
       "commit: exactly once. Prints a JSON summary when it stops (SIGINT, "
       "SIGTERM, --max-messages, --idle-exit-ms). Ignores --db.",
       {{"nats", "URL[,URL]", "the JetStream cluster; required"},
        {"partition", "N", "the partition (stream SL_P<N>); default 0"},
        {"durable", "NAME", "the durable consumer's name; required"},
        {"sqlite", "FILE", "the SQLite database (created); required"},
        {"batch", "N", "messages per transaction (default 64)"},
        {"ack-wait-ms", "MS",
         "a new consumer's redelivery delay (default 30000)"},
        {"max-messages", "N", "stop after applying N messages"},
        {"idle-exit-ms", "MS", "stop after MS without a new message"}}},
      {"publish",
       "publish --nats URL[,URL] [--partition N] [--replicas R]",
       "Publishes this ledger (--db) into the partition's EMPTY JetStream "
       "stream, in the format a leader publishes, so replicas started on "
       "the stream follow it (migration to a cluster; docs/cluster.md). "
       "Refuses a stream that holds anything, naming its last sequence.",
       {{"nats", "URL[,URL]", "the JetStream cluster; required"},
        {"partition", "N", "the partition (stream SL_P<N>); default 0"},
        {"replicas", "R",
         "copies of a stream it creates (default 3 with 3+ URLs, else 1)"}}},
      {"backup",
       "backup --to DIR",
       "An online consistent copy of the database (a RocksDB checkpoint) "
       "into DIR, which must not exist; audit verifies it, and a replica "
       "started on it replays only the stream after it. With a running "
       "storeledgerd use `storeledger --server ADDR backup --name NAME` (its "
       "--backup-dir).",
       {{"to", "DIR", "the new directory; required"},
        {"name", "NAME", "with --server: a directory under --backup-dir"}}},
      {"rebuild",
       "rebuild [--shadow] [--flush-every N] [--no-progress]",
       "Recompute every projection from the log.",
       {{"shadow", "", "only compare; exit 1 listing differences"},
        {"flush-every", "N", "events per projection batch"},
        {"no-progress", "", "no progress line on a terminal"}}},
  };
  return *verbs;
}

// The flags a verb takes only with --server (beside --server, --token and
// --tls-ca): CheckFlags accepts them there, and the help lists them.
struct ServerFlag {
  std::vector<std::string> verbs;
  FlagHelp flag;
};

const std::vector<ServerFlag>& ServerFlags() {
  static const std::vector<ServerFlag>* flags = new std::vector<ServerFlag>{
      {{"state", "diff", "history", "digest", "audit", "tail", "explain"},
       {"at-least", "P",
        "read your writes on a replica: it answers once its log holds "
        "position P (waiting at most 2 s, then UNAVAILABLE naming its "
        "position; docs/cluster.md)"}},
      {{"postings"},
       {"partition", "N",
        "a partitioned cluster, without --store: that partition's postings "
        "(required there)"}},
      {{"digest", "audit"},
       {"partition", "N", "a partitioned cluster: that partition's only"}},
      {{"explain"},
       {"partition", "N",
        "a partitioned cluster: that partition's record of the command (an "
        "applyPolicy is in each)"}},
      {{"tail"},
       {"partition", "N|all",
        "a partitioned cluster: that partition's feed, or every partition's "
        "merged, each line naming its partition (docs/cluster.md)"}},
  };
  return *flags;
}

void PrintFlag(const FlagHelp& flag, std::ostream& out) {
  std::string left = absl::StrCat("  --", flag.name);
  if (*flag.value != '\0') absl::StrAppend(&left, " ", flag.value);
  out << left;
  out << std::string(left.size() < 28 ? 28 - left.size() : 1, ' ') << flag.text
      << "\n";
}

const VerbHelp* Find(absl::string_view verb) {
  for (const VerbHelp& help : Verbs()) {
    if (verb == help.name) return &help;
  }
  return nullptr;
}

}  // namespace

bool PrintVerbHelp(absl::string_view verb, std::ostream& out) {
  const VerbHelp* help = Find(verb);
  if (help == nullptr) return false;
  out << "usage: storeledger [--db DIR] [--policy FILE] [--tz ZONE] "
      << help->synopsis << "\n\n"
      << help->text << "\n";
  if (!help->flags.empty()) out << "\nflags:\n";
  for (const FlagHelp& flag : help->flags) PrintFlag(flag, out);
  bool server_header = false;
  for (const ServerFlag& server : ServerFlags()) {
    if (std::find(server.verbs.begin(), server.verbs.end(), verb) ==
        server.verbs.end()) {
      continue;
    }
    if (!server_header) {
      out << "\nwith --server HOST:PORT --token T [--tls-ca FILE], also:\n";
      server_header = true;
    }
    PrintFlag(server.flag, out);
  }
  out << "\nTimes: RFC 3339 with any offset, or a date (midnight in the "
         "ledger's zone).\n";
  return true;
}

std::vector<std::string> DocumentedFlags(absl::string_view verb) {
  std::vector<std::string> names;
  if (const VerbHelp* help = Find(verb)) {
    for (const FlagHelp& flag : help->flags) names.push_back(flag.name);
  }
  return names;
}

std::vector<std::string> DocumentedServerFlags(absl::string_view verb) {
  std::vector<std::string> names;
  for (const ServerFlag& server : ServerFlags()) {
    if (std::find(server.verbs.begin(), server.verbs.end(), verb) !=
        server.verbs.end()) {
      names.push_back(server.flag.name);
    }
  }
  return names;
}

}  // namespace storeledger
