#include "cli/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/time.h"
#include "cli/ca_credentials.h"
#include "cli/diff_flags.h"
#include "cli/finance_print.h"
#include "cli/history_filter.h"
#include "cli/line_reader.h"
#include "cli/tail_flags.h"
#include "core/limits.h"
#include "core/policy.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/struct.pb.h"
#include "json/json.h"
#include "replay/finance.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {
namespace {

constexpr char kResumePositionMetadata[] = "storeledger-resume-position";

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

class Remote {
 public:
  explicit Remote(CliContext& ctx) : ctx_(ctx) {}

  absl::Status Connect() {
    const std::string address = *ctx_.flags.Get("server");
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        grpc::InsecureChannelCredentials();
    if (std::optional<std::string> ca = ctx_.flags.Get("tls-ca")) {
      ASSIGN_OR_RETURN(credentials, CaCredentials("--tls-ca", *ca));
    }
    if (std::optional<std::string> token = ctx_.flags.Get("token")) {
      token_ = *token;
    } else if (const char* env = std::getenv("STORELEDGER_TOKEN")) {
      token_ = env;
    }
    stub_ = v1::Ledger::NewStub(grpc::CreateChannel(address, credentials));
    return absl::OkStatus();
  }

  void Prepare(grpc::ClientContext* context) const {
    if (!token_.empty()) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
    }
  }

  // --at-least P: the read waits (bounded, on the server) until the
  // replica's log holds position P, else fails UNAVAILABLE naming its head.
  absl::StatusOr<uint64_t> AtLeast() const {
    absl::StatusOr<std::optional<uint64_t>> at_least =
        ctx_.flags.GetUint("at-least");
    if (!at_least.ok()) return at_least.status();
    return at_least->value_or(0);
  }

  int Apply();
  int State();
  int Diff();
  int History();
  int Digest();
  int Audit();
  int Explain();
  int Tail();
  int TailAll();
  absl::Status Feed(std::optional<uint32_t> partition, uint64_t from,
                    bool follow, uint64_t at_least,
                    const std::function<bool(const v1::Envelope&)>& emit,
                    const std::atomic<bool>& stop);
  int Find();
  int PositionAt();
  int Statement();
  int Postings();
  int Balances();

  // Which log a position belongs to in a partitioned cluster: the one of
  // the partition holding `store_id`, else of `partition`; neither: the
  // log of the node asked (the only one when the ledger is not partitioned).
  struct LogScope {
    std::string store_id;
    std::optional<uint32_t> partition;
  };
  // The position `at` had reached (or `position` clamped to the head, or
  // the head), with its recorded_at: the PositionAt call.
  absl::StatusOr<v1::PositionAt> Resolve(std::optional<absl::Time> at,
                                         std::optional<uint64_t> position,
                                         absl::string_view written,
                                         const LogScope& scope = {});
  // --position N or --known-at T, as CliContext::KnowledgePosition.
  absl::StatusOr<std::optional<uint64_t>> KnowledgePosition(
      const LogScope& scope = {});
  // The cluster's partition count (Digest); 0 when not partitioned.
  absl::StatusOr<uint32_t> Partitions();
  // --partition N, checked to fit a partition number; nullopt when absent.
  absl::StatusOr<std::optional<uint32_t>> PartitionFlag() const;
  // `digest` and `audit` of a partitioned cluster (docs/cluster.md
  // "Routing"; --at-least, a position of one log, refused): `ask(p)` for
  // each of the `partitions` in turn, which prints
  // that partition's line and says whether it passed; a partition that
  // cannot answer gets a line {"partition":p,"error":"..."} and is named on
  // stderr. Then the summary line: `summary` ("events":N and the like) and
  // the partitions that failed. kExitOk when none did, else
  // kExitCheckFailed naming them.
  int EveryPartition(uint32_t partitions,
                     const std::function<absl::StatusOr<bool>(uint32_t)>& ask,
                     const std::function<std::string()>& summary);
  // The ids a history without --store finds (FindResult of `filter`'s id).
  absl::StatusOr<std::vector<std::string>> OwnersOf(
      const HistoryFilter& filter);
  // One store's history as ReadStream sends it: `fn` per envelope until it
  // returns false; whether the store has any. `cancelled` says fn stopped it.
  absl::StatusOr<bool> ReadHistory(
      const std::string& store_id, bool include_rejections,
      const std::function<bool(const v1::Envelope&)>& fn);
  int Backup();
  // The store as of `as_of` (GetStore), once the replica holds min_position.
  absl::StatusOr<v1::StoreState> GetStore(const std::string& store_id,
                                          const AsOf& as_of,
                                          uint64_t min_position);

 private:
  CliContext& ctx_;
  std::string token_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
};

int Remote::Apply() {
  const std::vector<std::string>& args = ctx_.flags.positional();
  if (args.size() > 2) {
    return ctx_.Fail(
        absl::InvalidArgumentError("apply takes at most one FILE"));
  }
  std::ifstream file;
  std::istream* in = ctx_.in;
  if (args.size() == 2 && args[1] != "-") {
    file.open(args[1]);
    if (!file) {
      return ctx_.Fail(
          absl::InvalidArgumentError(absl::StrCat("cannot read ", args[1])));
    }
    in = &file;
  }
  grpc::ClientContext context;
  Prepare(&context);
  std::unique_ptr<grpc::ClientReaderWriter<v1::Command, v1::CommandResult>>
      stream = stub_->ExecuteStream(&context);

  // Lines in input order: a local INVALID result, or a command sent and
  // awaiting its result. Results come back in the order sent.
  struct Pending {
    int64_t line;
    std::optional<v1::CommandResult> local;
  };
  std::deque<Pending> pending;
  size_t outstanding = 0;
  bool any_invalid = false;
  bool broken = false;
  auto print = [&](int64_t line, v1::CommandResult result) {
    if (result.status() == v1::INVALID) any_invalid = true;
    result.set_line(line);
    *ctx_.out << ToJson(result) << "\n";
  };
  // Prints the front entries up to and including one remote result. A line
  // leaves `pending` only once its result is printed: when the stream breaks,
  // the front of `pending` is the first line without a result.
  auto drain_one = [&]() -> bool {
    while (!pending.empty()) {
      Pending& entry = pending.front();
      if (entry.local.has_value()) {
        print(entry.line, *std::move(entry.local));
        pending.pop_front();
        continue;
      }
      v1::CommandResult result;
      if (!stream->Read(&result)) {
        broken = true;
        return false;
      }
      print(entry.line, std::move(result));
      pending.pop_front();
      --outstanding;
      return true;
    }
    return true;
  };

  LineReader reader(in, kInputLineBytesMax);
  std::string line;
  bool too_long = false;
  int64_t line_number = 0;
  bool write_failed = false;
  while (!broken && reader.Next(&line, &too_long)) {
    ++line_number;
    if (too_long) {
      pending.push_back(
          {line_number,
           InvalidResult("", absl::StrCat("line is longer than ",
                                          kInputLineBytesMax, " bytes"))});
    } else if (absl::StripAsciiWhitespace(line).empty()) {
      continue;
    } else {
      absl::StatusOr<v1::Command> command = ParseCommandJson(line);
      if (!command.ok()) {
        pending.push_back(
            {line_number, InvalidResult("", command.status().message())});
      } else {
        // A failed write means the stream is over; the results already on
        // their way are still read (below), and this line has none.
        pending.push_back({line_number, std::nullopt});
        ++outstanding;
        if (!stream->Write(*command)) {
          write_failed = true;
          break;
        }
      }
    }
    while (outstanding >= kRemoteApplyWindow && !broken) drain_one();
    // Local results ahead of every remote one are printed at once.
    while (!pending.empty() && pending.front().local.has_value()) drain_one();
  }
  if (!broken && !write_failed) stream->WritesDone();
  while (!broken && !pending.empty()) drain_one();
  grpc::Status status = stream->Finish();
  ctx_.out->flush();
  if (status.ok() && !pending.empty()) {
    status = grpc::Status(grpc::StatusCode::UNKNOWN,
                          "the server ended the stream early");
  }
  if (!status.ok()) {
    return ctx_.Fail(absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat(
            status.error_message(),
            pending.empty()
                ? ""
                : absl::StrCat(" (results from line ", pending.front().line,
                               " on were not received)"))));
  }
  return any_invalid ? kExitUsage : kExitOk;
}

int Remote::State() {
  if (absl::Status s = ctx_.CheckFlags(); !s.ok()) return ctx_.Fail(s);
  std::optional<std::string> store = ctx_.flags.Get("store");
  if (!store)
    return ctx_.Fail(absl::InvalidArgumentError("--store is required"));
  AsOf as_of;
  absl::StatusOr<std::optional<absl::Time>> t = ctx_.flags.GetTime("as-of");
  if (!t.ok()) return ctx_.Fail(t.status());
  as_of.business_time = *t;
  absl::StatusOr<std::optional<uint64_t>> position =
      KnowledgePosition({*store, std::nullopt});
  if (!position.ok()) return ctx_.Fail(position.status());
  as_of.position = *position;
  ctx_.EchoTime("as-of");
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());
  absl::StatusOr<v1::StoreState> state = GetStore(*store, as_of, *at_least);
  if (!state.ok()) return ctx_.Fail(state.status());
  *ctx_.out << ToJson(*state) << "\n";
  return kExitOk;
}

absl::StatusOr<v1::StoreState> Remote::GetStore(const std::string& store_id,
                                                const AsOf& as_of,
                                                uint64_t min_position) {
  v1::GetStoreRequest request;
  request.set_store_id(store_id);
  if (as_of.business_time.has_value()) {
    *request.mutable_as_of() = ToProto(*as_of.business_time);
  }
  if (as_of.position.has_value()) request.set_position(*as_of.position);
  request.set_min_position(min_position);
  grpc::ClientContext context;
  Prepare(&context);
  v1::StoreState state;
  RETURN_IF_ERROR(FromGrpc(stub_->GetStore(&context, request, &state)));
  return state;
}

// `diff` through GetDiff, with --known-at T asked of the store's log.
int Remote::Diff() {
  absl::StatusOr<DiffFlags> flags = DiffFlags::Parse(ctx_);
  if (!flags.ok()) return ctx_.Fail(flags.status());
  absl::StatusOr<std::optional<uint64_t>> position =
      KnowledgePosition({flags->store_id, std::nullopt});
  if (!position.ok()) return ctx_.Fail(position.status());
  flags->SetKnowledge(*position);
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());
  v1::GetDiffRequest request;
  request.set_store_id(flags->store_id);
  for (const auto& [side, as_of] :
       {std::pair(request.mutable_from(), &flags->before),
        std::pair(request.mutable_to(), &flags->after)}) {
    if (as_of->business_time.has_value()) {
      *side->mutable_as_of() = ToProto(*as_of->business_time);
    }
    if (as_of->position.has_value()) side->set_position(*as_of->position);
  }
  request.set_min_position(*at_least);
  grpc::ClientContext context;
  Prepare(&context);
  v1::StoreDiff diff;
  if (absl::Status s = FromGrpc(stub_->GetDiff(&context, request, &diff));
      !s.ok()) {
    return ctx_.Fail(s);
  }
  return PrintDiff(ctx_, diff);
}

absl::StatusOr<v1::PositionAt> Remote::Resolve(std::optional<absl::Time> at,
                                               std::optional<uint64_t> position,
                                               absl::string_view written,
                                               const LogScope& scope) {
  v1::PositionAtRequest request;
  if (at.has_value()) *request.mutable_at() = ToProto(*at);
  if (position.has_value()) request.set_position(*position);
  request.set_written(std::string(written));
  request.set_store_id(scope.store_id);
  if (scope.partition.has_value()) request.set_partition(*scope.partition);
  grpc::ClientContext context;
  Prepare(&context);
  v1::PositionAt answer;
  RETURN_IF_ERROR(FromGrpc(stub_->PositionAt(&context, request, &answer)));
  return answer;
}

absl::StatusOr<std::optional<uint64_t>> Remote::KnowledgePosition(
    const LogScope& scope) {
  return ctx_.KnowledgePosition([&](absl::Time t) -> absl::StatusOr<uint64_t> {
    ASSIGN_OR_RETURN(v1::PositionAt at, Resolve(t, std::nullopt, "", scope));
    return at.position();
  });
}

absl::StatusOr<uint32_t> Remote::Partitions() {
  grpc::ClientContext context;
  Prepare(&context);
  v1::Digest digest;
  RETURN_IF_ERROR(
      FromGrpc(stub_->Digest(&context, v1::DigestRequest(), &digest)));
  return digest.partitions();
}

absl::StatusOr<std::vector<std::string>> Remote::OwnersOf(
    const HistoryFilter& filter) {
  v1::FindRequest request;
  std::string kind;
  if (filter.order_id.has_value()) {
    request.set_id(*filter.order_id);
    kind = "order";
  } else if (filter.withdrawal_id.has_value()) {
    request.set_id(*filter.withdrawal_id);
    kind = "withdrawal";
  } else {
    request.set_id(filter.product_id.value_or(""));
    kind = "product";
  }
  grpc::ClientContext context;
  Prepare(&context);
  v1::FindResult found;
  RETURN_IF_ERROR(FromGrpc(stub_->Find(&context, request, &found)));
  std::vector<std::string> owners;
  for (const v1::IdMatch& match : found.matches()) {
    if (match.kind() == kind) owners.push_back(match.store_id());
  }
  std::sort(owners.begin(), owners.end());
  return owners;
}

absl::StatusOr<bool> Remote::ReadHistory(
    const std::string& store_id, bool include_rejections,
    const std::function<bool(const v1::Envelope&)>& fn) {
  absl::StatusOr<uint64_t> at_least = AtLeast();
  RETURN_IF_ERROR(at_least.status());
  v1::ReadStreamRequest request;
  request.set_store_id(store_id);
  request.set_include_rejections(include_rejections);
  request.set_min_position(*at_least);
  grpc::ClientContext context;
  Prepare(&context);
  std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
      stub_->ReadStream(&context, request);
  v1::Envelope envelope;
  bool stopped = false;
  while (reader->Read(&envelope)) {
    if (!fn(envelope)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  if (stopped) {
    while (reader->Read(&envelope)) {
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return true;
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  RETURN_IF_ERROR(FromGrpc(status));
  return true;
}

int Remote::History() {
  if (absl::Status s = ctx_.CheckFlags(); !s.ok()) return ctx_.Fail(s);
  absl::StatusOr<HistoryFilter> filter = HistoryFilter::FromFlags(ctx_.flags);
  if (!filter.ok()) return ctx_.Fail(filter.status());
  std::optional<std::string> store = ctx_.flags.Get("store");
  std::vector<std::string> owners;
  if (filter->by_id()) {
    absl::StatusOr<std::vector<std::string>> found = OwnersOf(*filter);
    if (!found.ok()) return ctx_.Fail(found.status());
    owners = *std::move(found);
  }
  absl::StatusOr<std::vector<std::string>> stores =
      HistoryStores(*filter, store, owners);
  if (!stores.ok()) return ctx_.Fail(stores.status());
  absl::StatusOr<std::optional<uint64_t>> limit = ctx_.flags.GetUint("limit");
  if (!limit.ok()) return ctx_.Fail(limit.status());
  const bool include_rejections = ctx_.flags.Has("include-rejections");
  // The server sends each store's whole history, facts, the syncs from it
  // and refusals merged by position as the embedded verb merges them; the
  // filters are applied here, by the same code as the embedded verb's.
  uint64_t printed = 0, last_position = 0;
  auto print = [&](const v1::Envelope& envelope) {
    if (envelope.position() == last_position) return;
    last_position = envelope.position();
    *ctx_.out << ToJson(envelope) << "\n";
    ++printed;
  };
  // The embedded verb fails with NOT_FOUND when the store has no events and
  // no refusal passes the filters; a fact, selected or not, means it has.
  bool found = false;
  if (stores->size() == 1) {
    absl::StatusOr<bool> read = ReadHistory(
        stores->front(), include_rejections, [&](const v1::Envelope& e) {
          const bool selected = filter->Selects(e);
          found = found || selected || !e.payload().has_command_rejected();
          const bool full = limit->has_value() && printed >= **limit;
          if (full && found) return false;
          if (selected && !full) print(e);
          return true;
        });
    if (!read.ok()) return ctx_.Fail(read.status());
  } else {
    // Several stores (a product synced into a WeChat Store): merged by
    // position, a sync seen from both of its stores printed once.
    std::vector<v1::Envelope> selected;
    for (const std::string& id : *stores) {
      absl::StatusOr<bool> read =
          ReadHistory(id, include_rejections, [&](const v1::Envelope& e) {
            const bool selects = filter->Selects(e);
            found = found || selects || !e.payload().has_command_rejected();
            if (selects) selected.push_back(e);
            return true;
          });
      if (!read.ok()) return ctx_.Fail(read.status());
    }
    std::stable_sort(selected.begin(), selected.end(),
                     [](const v1::Envelope& a, const v1::Envelope& b) {
                       return a.position() < b.position();
                     });
    for (const v1::Envelope& e : selected) {
      if (limit->has_value() && printed >= **limit) break;
      print(e);
    }
  }
  ctx_.out->flush();
  const std::string names = absl::StrJoin(*stores, ", ");
  if (!found) return ctx_.Fail(HistoryNotFound(names, include_rejections));
  if (printed == 0 && limit->value_or(1) != 0) {
    SayHistoryFilteredOut(ctx_, names);
  }
  return kExitOk;
}

int Remote::Find() {
  if (absl::Status s = ctx_.CheckFlags(); !s.ok()) return ctx_.Fail(s);
  const std::vector<std::string>& args = ctx_.flags.positional();
  if (args.size() != 2 || args[1].empty()) {
    return ctx_.Fail(absl::InvalidArgumentError("usage: storeledger find ID"));
  }
  v1::FindRequest request;
  request.set_id(args[1]);
  grpc::ClientContext context;
  Prepare(&context);
  v1::FindResult found;
  grpc::Status status = stub_->Find(&context, request, &found);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  if (found.matches().empty()) {
    return ctx_.Fail(absl::NotFoundError(absl::StrCat(
        "no store, merchant, product, order, withdrawal or command has id ",
        args[1])));
  }
  *ctx_.out << ToJson(found) << "\n";
  return kExitOk;
}

int Remote::PositionAt() {
  if (absl::Status s = ctx_.CheckFlags(); !s.ok()) return ctx_.Fail(s);
  const std::vector<std::string>& args = ctx_.flags.positional();
  if (args.size() != 2) {
    return ctx_.Fail(
        absl::InvalidArgumentError("usage: storeledger position-at T"));
  }
  absl::StatusOr<absl::Time> at = ParseLedgerTime("T", args[1], ctx_.zone.zone);
  if (!at.ok()) return ctx_.Fail(at.status());
  absl::StatusOr<v1::PositionAt> answer = Resolve(*at, std::nullopt, args[1]);
  if (!answer.ok()) return ctx_.Fail(answer.status());
  if (answer->position() == 0) {
    ctx_.SayNothingMatched("nothing was recorded at or before that time");
  }
  *ctx_.out << ToJson(*answer) << "\n";
  return kExitOk;
}

int Remote::Statement() {
  absl::StatusOr<StatementFlags> flags = StatementFlags::Parse(ctx_);
  if (!flags.ok()) return ctx_.Fail(flags.status());
  if (flags->proofs) {
    return ctx_.Fail(absl::InvalidArgumentError(
        "--proofs does not work with --server yet; run it on the database, "
        "or fetch each proof with GetInclusionProof"));
  }
  v1::GetStatementRequest request;
  request.set_store_id(flags->store_id);
  *request.mutable_from() = ToProto(flags->from);
  *request.mutable_to() = ToProto(flags->to);
  request.set_pair(flags->pair);
  grpc::ClientContext context;
  Prepare(&context);
  v1::Statements answer;
  grpc::Status status = stub_->GetStatement(&context, request, &answer);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  v1::PositionAt head;
  head.set_position(answer.position());
  *head.mutable_recorded_at() = answer.recorded_at();
  return PrintStatements(ctx_, *flags,
                         std::vector<v1::Statement>(answer.statements().begin(),
                                                    answer.statements().end()),
                         head);
}

int Remote::Postings() {
  absl::StatusOr<PostingsFlags> flags = PostingsFlags::Parse(ctx_);
  if (!flags.ok()) return ctx_.Fail(flags.status());
  // Positions are per partition in a cluster: a store's postings are its
  // partition's; every store's, one partition's (--partition).
  LogScope scope;
  absl::StatusOr<std::optional<uint32_t>> partition = PartitionFlag();
  if (!partition.ok()) return ctx_.Fail(partition.status());
  if (flags->filter.store_id.has_value()) {
    if (partition->has_value()) {
      return ctx_.Fail(absl::InvalidArgumentError(
          "--partition is for every store's postings; a --store's are its "
          "partition's"));
    }
    scope.store_id = *flags->filter.store_id;
  } else {
    absl::StatusOr<uint32_t> partitions = Partitions();
    if (!partitions.ok()) return ctx_.Fail(partitions.status());
    if (*partitions > 1 && !partition->has_value()) {
      return ctx_.Fail(absl::InvalidArgumentError(absl::StrCat(
          "this cluster has ", *partitions,
          " partitions and positions are per partition: give --store ID, or "
          "--partition N (0..",
          *partitions - 1, ") for every store's postings of one")));
    }
    // The server answers a partition it does not have.
    scope.partition = *partition;
  }
  absl::StatusOr<std::optional<uint64_t>> position = KnowledgePosition(scope);
  if (!position.ok()) return ctx_.Fail(position.status());
  // The head (or the known position) first, so that the postings and the
  // CSV's as-of line agree while the server appends.
  absl::StatusOr<v1::PositionAt> at =
      Resolve(std::nullopt, *position, "", scope);
  if (!at.ok()) return ctx_.Fail(at.status());
  v1::ListPostingsRequest request;
  if (scope.partition.has_value()) request.set_partition(*scope.partition);
  if (flags->filter.store_id.has_value()) {
    request.set_store_id(*flags->filter.store_id);
  }
  if (flags->filter.from.has_value()) {
    *request.mutable_from() = ToProto(*flags->filter.from);
  }
  if (flags->filter.to.has_value()) {
    *request.mutable_to() = ToProto(*flags->filter.to);
  }
  request.set_max_position(at->position());
  grpc::ClientContext context;
  Prepare(&context);
  std::unique_ptr<grpc::ClientReader<v1::PostingLine>> reader =
      stub_->ListPostings(&context, request);
  PrintPostingsHeader(ctx_, *flags, *at);
  v1::PostingLine line;
  uint64_t printed = 0;
  while (reader->Read(&line)) {
    ++printed;
    PrintPosting(ctx_, *flags, line);
  }
  grpc::Status status = reader->Finish();
  ctx_.out->flush();
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  if (printed == 0) ctx_.SayNothingMatched("no posting passes the filters");
  return kExitOk;
}

int Remote::Balances() {
  absl::StatusOr<BalancesFlags> flags = BalancesFlags::Parse(ctx_);
  if (!flags.ok()) return ctx_.Fail(flags.status());
  absl::StatusOr<uint32_t> partitions = Partitions();
  if (!partitions.ok()) return ctx_.Fail(partitions.status());
  // A partitioned cluster: every partition's stores, each as of its own
  // position (--known-at T resolved in each log), summed per kind here.
  const bool partitioned = *partitions > 1;
  if (partitioned && ctx_.flags.Has("position")) {
    return ctx_.Fail(absl::InvalidArgumentError(absl::StrCat(
        "--position names a position of one log, and this cluster has ",
        *partitions, " (one a partition); use --known-at T")));
  }
  ctx_.EchoTime("as-of");
  std::vector<v1::BalancesReport> reports;
  std::vector<v1::PositionAt> ats;
  for (uint32_t p = 0; p < std::max<uint32_t>(*partitions, 1); ++p) {
    LogScope scope;
    if (partitioned) scope.partition = p;
    v1::GetBalancesRequest request;
    if (flags->as_of.has_value())
      *request.mutable_as_of() = ToProto(*flags->as_of);
    if (partitioned) request.set_partition(p);
    absl::StatusOr<std::optional<uint64_t>> position = KnowledgePosition(scope);
    if (!position.ok()) return ctx_.Fail(position.status());
    if (position->has_value()) request.set_position(**position);
    grpc::ClientContext context;
    Prepare(&context);
    v1::BalancesReport& report = reports.emplace_back();
    grpc::Status status = stub_->GetBalances(&context, request, &report);
    if (!status.ok()) return ctx_.Fail(FromGrpc(status));
    absl::StatusOr<v1::PositionAt> at =
        Resolve(std::nullopt, report.position(), "", scope);
    if (!at.ok()) return ctx_.Fail(at.status());
    ats.push_back(*std::move(at));
  }
  if (!partitioned) {
    PrintBalances(ctx_, *flags, std::move(reports.front()), ats);
    return kExitOk;
  }
  absl::StatusOr<v1::BalancesReport> merged = MergePartitionBalances(reports);
  if (!merged.ok()) return ctx_.Fail(merged.status());
  PrintBalances(ctx_, *flags, *std::move(merged), ats);
  return kExitOk;
}

absl::StatusOr<std::optional<uint32_t>> Remote::PartitionFlag() const {
  absl::StatusOr<std::optional<uint64_t>> partition =
      ctx_.flags.GetUint("partition");
  if (!partition.ok()) return partition.status();
  if (!partition->has_value()) return std::optional<uint32_t>();
  if (**partition > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition ", **partition, " is out of range"));
  }
  return std::optional<uint32_t>(static_cast<uint32_t>(**partition));
}

int Remote::EveryPartition(
    uint32_t partitions,
    const std::function<absl::StatusOr<bool>(uint32_t)>& ask,
    const std::function<std::string()>& summary) {
  if (ctx_.flags.Has("at-least")) {
    return ctx_.Fail(absl::InvalidArgumentError(
        "--at-least is a position of one partition's log: give --partition "
        "N too"));
  }
  std::vector<uint32_t> failed;
  for (uint32_t p = 0; p < partitions; ++p) {
    absl::StatusOr<bool> passed = ask(p);
    if (passed.ok() && *passed) continue;
    failed.push_back(p);
    if (passed.ok()) continue;
    google::protobuf::Value error;
    error.set_string_value(passed.status().ToString());
    *ctx_.out << "{\"partition\":" << p << ",\"error\":" << ToJson(error)
              << "}\n";
    *ctx_.err << "storeledger " << ctx_.verb << ": partition " << p << ": "
              << passed.status() << "\n";
  }
  *ctx_.out << "{\"partitions\":" << partitions << "," << summary()
            << ",\"ok\":" << (failed.empty() ? "true" : "false")
            << ",\"failed\":[" << absl::StrJoin(failed, ",") << "]}\n";
  ctx_.out->flush();
  if (failed.empty()) return kExitOk;
  *ctx_.err << "storeledger " << ctx_.verb << ": FAILED: partition"
            << (failed.size() == 1 ? " " : "s ") << absl::StrJoin(failed, ", ")
            << " of " << partitions << "\n";
  return kExitCheckFailed;
}

int Remote::Digest() {
  if (absl::Status s = ctx_.flags.CheckKnown(
          {"at-least", "partition", "server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());
  absl::StatusOr<std::optional<uint32_t>> partition = PartitionFlag();
  if (!partition.ok()) return ctx_.Fail(partition.status());
  v1::DigestRequest request;
  request.set_min_position(*at_least);
  if (partition->has_value()) request.set_partition(**partition);
  grpc::ClientContext context;
  Prepare(&context);
  v1::Digest digest;
  grpc::Status status = stub_->Digest(&context, request, &digest);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  if (digest.partitions() <= 1 || partition->has_value()) {
    *ctx_.out << ToJson(digest) << "\n";
    return kExitOk;
  }
  // A partitioned cluster (docs/cluster.md "Partitions"): one line per
  // partition, asked through this node, then the cluster's events in all.
  uint64_t events = 0;
  return EveryPartition(
      digest.partitions(),
      [&](uint32_t p) -> absl::StatusOr<bool> {
        grpc::ClientContext one;
        Prepare(&one);
        v1::DigestRequest one_request;
        one_request.set_partition(p);
        v1::Digest of;
        RETURN_IF_ERROR(FromGrpc(stub_->Digest(&one, one_request, &of)));
        *ctx_.out << "{\"partition\":" << p << ",\"position\":" << of.position()
                  << ",\"hash\":\"" << of.hash() << "\"}\n";
        events += of.position();
        return true;
      },
      [&] { return absl::StrCat("\"events\":", events); });
}

int Remote::Audit() {
  if (absl::Status s =
          ctx_.flags.CheckKnown({"at-least", "no-progress", "partition",
                                 "server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());
  absl::StatusOr<std::optional<uint32_t>> partition = PartitionFlag();
  if (!partition.ok()) return ctx_.Fail(partition.status());
  std::optional<uint32_t> partitions;
  if (!partition->has_value()) {
    absl::StatusOr<uint32_t> count = Partitions();
    if (!count.ok()) return ctx_.Fail(count.status());
    if (*count > 1) partitions = *count;
  }
  const absl::Time started = absl::Now();
  auto audit = [&](std::optional<uint32_t> p,
                   v1::AuditReport* report) -> absl::Status {
    v1::AuditRequest request;
    request.set_min_position(*at_least);
    if (p.has_value()) request.set_partition(*p);
    grpc::ClientContext context;
    Prepare(&context);
    return FromGrpc(stub_->Audit(&context, request, report));
  };
  if (!partitions.has_value()) {
    v1::AuditReport report;
    if (absl::Status s = audit(*partition, &report); !s.ok()) {
      return ctx_.Fail(s);
    }
    return PrintAuditReport(ctx_, report, started);
  }
  // A partitioned cluster: each partition's report (it names its
  // partition), then the cluster's line.
  uint64_t events = 0;
  return EveryPartition(
      *partitions,
      [&](uint32_t p) -> absl::StatusOr<bool> {
        v1::AuditReport report;
        RETURN_IF_ERROR(audit(p, &report));
        events += report.events_checked();
        return PrintAuditReport(ctx_, report, started, p) == kExitOk;
      },
      [&] { return absl::StrCat("\"events\":", events); });
}

int Remote::Explain() {
  if (absl::Status s = ctx_.CheckFlags(); !s.ok()) return ctx_.Fail(s);
  std::optional<std::string> command_id = ctx_.flags.Get("command-id");
  if (!command_id || command_id->empty()) {
    return ctx_.Fail(absl::InvalidArgumentError("--command-id is required"));
  }
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());
  absl::StatusOr<std::optional<uint32_t>> partition = PartitionFlag();
  if (!partition.ok()) return ctx_.Fail(partition.status());
  v1::ExplainRequest request;
  request.set_command_id(*command_id);
  request.set_min_position(*at_least);
  if (partition->has_value()) request.set_partition(**partition);
  grpc::ClientContext context;
  Prepare(&context);
  v1::Explanation explanation;
  grpc::Status status = stub_->Explain(&context, request, &explanation);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  *ctx_.out << ToJson(explanation) << "\n";
  return kExitOk;
}

int Remote::Backup() {
  if (absl::Status s =
          ctx_.flags.CheckKnown({"name", "server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  v1::BackupRequest request;
  request.set_name(ctx_.flags.GetOr("name", ""));
  grpc::ClientContext context;
  Prepare(&context);
  v1::BackupResult result;
  grpc::Status status = stub_->Backup(&context, request, &result);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  *ctx_.out << ToJson(result) << "\n";
  return kExitOk;
}

// `tail --follow` stops on SIGINT / SIGTERM: the handler only sets a flag
// that a watcher thread turns into a cancellation of the call.
volatile std::sig_atomic_t remote_tail_stop = 0;
extern "C" void RequestRemoteTailStop(int) { remote_tail_stop = 1; }

// While it lives (and `follow`), SIGINT and SIGTERM set remote_tail_stop.
class StopSignals {
 public:
  explicit StopSignals(bool follow) : follow_(follow) {
    remote_tail_stop = 0;
    if (!follow_) return;
    previous_int_ = std::signal(SIGINT, RequestRemoteTailStop);
    previous_term_ = std::signal(SIGTERM, RequestRemoteTailStop);
  }
  ~StopSignals() {
    if (!follow_) return;
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  const bool follow_;
  void (*previous_int_)(int) = SIG_DFL;
  void (*previous_term_)(int) = SIG_DFL;
};

// One partition's feed (`partition` unset: the log of the node asked) from
// `from`, each envelope handed to `emit` (false: stop); resumes where it
// was cut off for falling behind; ends with the call's status (ok when
// `emit` or `stop` ended it). `stop`, or SIGINT / SIGTERM while
// following, cancels the call.
absl::Status Remote::Feed(std::optional<uint32_t> partition, uint64_t from,
                          bool follow, uint64_t at_least,
                          const std::function<bool(const v1::Envelope&)>& emit,
                          const std::atomic<bool>& stop) {
  uint64_t last = from;
  while (true) {
    grpc::ClientContext context;
    Prepare(&context);
    v1::SubscribeRequest request;
    request.set_from_position(last);
    request.set_catch_up_only(!follow);
    request.set_min_position(at_least);
    if (partition.has_value()) request.set_partition(*partition);
    std::atomic<bool> call_over{false};
    std::thread watcher([&] {
      while (!call_over) {
        if (stop || remote_tail_stop) {
          context.TryCancel();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
        stub_->Subscribe(&context, request);
    v1::Envelope envelope;
    bool stopped = false;
    while (reader->Read(&envelope)) {
      last = envelope.position();
      if (!emit(envelope)) {
        stopped = true;
        context.TryCancel();
        while (reader->Read(&envelope)) {
        }
        break;
      }
    }
    grpc::Status status = reader->Finish();
    call_over = true;
    watcher.join();
    if (stopped || stop || remote_tail_stop) return absl::OkStatus();
    // Cut off for falling behind: resume from the last position received.
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
        context.GetServerTrailingMetadata().count(kResumePositionMetadata)) {
      continue;
    }
    return FromGrpc(status);
  }
}

int Remote::Tail() {
  if (absl::Status s = ctx_.flags.CheckKnown(
          {"from-position", "format", "follow", "max-events", "at-least",
           "partition", "server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  const std::optional<std::string> partition_flag = ctx_.flags.Get("partition");
  if (partition_flag == "all") return TailAll();
  std::optional<uint32_t> partition;
  if (partition_flag.has_value()) {
    uint32_t p;
    if (!absl::SimpleAtoi(*partition_flag, &p)) {
      return ctx_.Fail(absl::InvalidArgumentError(
          absl::StrCat("--partition takes a partition number or `all`, not '",
                       *partition_flag, "'")));
    }
    partition = p;
  }
  absl::StatusOr<TailFlags> tail = TailFlags::Parse(ctx_.flags);
  if (!tail.ok()) return ctx_.Fail(tail.status());
  const bool follow = tail->follow;
  // A consumer ahead of the log must notice, as in the embedded verb.
  absl::StatusOr<v1::PositionAt> head =
      Resolve(std::nullopt, std::nullopt, "", LogScope{"", partition});
  if (!head.ok()) return ctx_.Fail(head.status());
  if (std::optional<std::string> ahead =
          TailPastHead(tail->from_position, head->position())) {
    if (!follow) return ctx_.Fail(absl::OutOfRangeError(*ahead));
    *ctx_.err << "storeledger tail: warning: " << *ahead
              << "; waiting for the log to reach it\n";
  }
  absl::StatusOr<uint64_t> at_least = AtLeast();
  if (!at_least.ok()) return ctx_.Fail(at_least.status());

  uint64_t emitted = 0;
  auto emit = [&](const v1::Envelope& envelope) {
    if (tail->max_events.has_value() && emitted >= *tail->max_events) {
      return false;
    }
    if (tail->delimited) {
      WriteDelimited(*ctx_.out, envelope.SerializeAsString());
    } else {
      *ctx_.out << ToJson(envelope) << "\n";
    }
    ctx_.out->flush();
    ++emitted;
    return !tail->max_events.has_value() || emitted < *tail->max_events;
  };
  const StopSignals signals(follow);
  const std::atomic<bool> never{false};
  absl::Status result =
      Feed(partition, tail->from_position, follow, *at_least, emit, never);
  ctx_.out->flush();
  if (!result.ok()) return ctx_.Fail(result);
  return kExitOk;
}

// `tail --partition all`: every partition's feed at once, merged as the
// envelopes come (each partition in its order; there is no order across
// partitions, whose positions are their own), each JSON line with its
// `partition`. --from-position is one position for every partition or one
// per partition ("P0,P1,..."), so a consumer resumes each where it was.
int Remote::TailAll() {
  if (ctx_.flags.Has("at-least")) {
    return ctx_.Fail(absl::InvalidArgumentError(
        "--at-least names a position of one log; with --partition all every "
        "partition has its own"));
  }
  if (ctx_.flags.GetOr("format", "jsonl") != "jsonl") {
    return ctx_.Fail(absl::InvalidArgumentError(
        "--partition all prints JSON lines (--format jsonl): the delimited "
        "form has no place for each envelope's partition"));
  }
  absl::StatusOr<uint32_t> partitions = Partitions();
  if (!partitions.ok()) return ctx_.Fail(partitions.status());
  const uint32_t count = std::max<uint32_t>(*partitions, 1);
  absl::StatusOr<std::optional<uint64_t>> max_events =
      ctx_.flags.GetUint("max-events");
  if (!max_events.ok()) return ctx_.Fail(max_events.status());
  const bool follow = ctx_.flags.Has("follow");
  std::vector<uint64_t> from(count, 0);
  const std::string positions = ctx_.flags.GetOr("from-position", "");
  std::vector<std::string> given = absl::StrSplit(positions, ',');
  if (positions.empty() || (given.size() != 1 && given.size() != count)) {
    return ctx_.Fail(absl::InvalidArgumentError(absl::StrCat(
        "--from-position: one position for every partition, or ", count,
        " (one per partition, comma-separated), not '", positions, "'")));
  }
  for (uint32_t p = 0; p < count; ++p) {
    const std::string& text = given[given.size() == 1 ? 0 : p];
    if (!absl::SimpleAtoi(text, &from[p])) {
      return ctx_.Fail(absl::InvalidArgumentError(
          absl::StrCat("--from-position: '", text,
                       "' is not a position (partition ", p, ")")));
    }
  }
  std::mutex mu;
  uint64_t emitted = 0;
  std::atomic<bool> stop{false};
  std::vector<absl::Status> results(count);
  const StopSignals signals(follow);
  std::vector<std::thread> feeds;
  for (uint32_t p = 0; p < count; ++p) {
    feeds.emplace_back([&, p] {
      auto emit = [&](const v1::Envelope& envelope) {
        std::lock_guard<std::mutex> lock(mu);
        if (stop || (max_events->has_value() && emitted >= **max_events)) {
          stop = true;
          return false;
        }
        // The envelope's JSON object, its partition first.
        *ctx_.out << "{\"partition\":" << p << ","
                  << absl::string_view(ToJson(envelope)).substr(1) << "\n";
        ctx_.out->flush();
        ++emitted;
        if (max_events->has_value() && emitted >= **max_events) {
          stop = true;
        }
        return !stop.load();
      };
      results[p] =
          Feed(*partitions == 0 ? std::nullopt : std::optional<uint32_t>(p),
               from[p], follow, 0, emit, stop);
      // One partition's failure ends every feed: the merged feed is whole
      // or it says what is missing.
      if (!results[p].ok()) stop = true;
    });
  }
  for (std::thread& feed : feeds) feed.join();
  ctx_.out->flush();
  for (uint32_t p = 0; p < count; ++p) {
    if (!results[p].ok()) {
      return ctx_.Fail(absl::Status(
          results[p].code(),
          absl::StrCat("partition ", p, ": ", results[p].message())));
    }
  }
  return kExitOk;
}

}  // namespace

int RunRemoteVerb(CliContext& ctx) {
  Remote remote(ctx);
  if (ctx.verb == "apply") {
    if (absl::Status s = ctx.flags.CheckKnown({"server", "token", "tls-ca"});
        !s.ok()) {
      return ctx.Fail(s);
    }
  }
  if (absl::Status s = remote.Connect(); !s.ok()) return ctx.Fail(s);
  if (ctx.verb == "apply") return remote.Apply();
  if (ctx.verb == "state") return remote.State();
  if (ctx.verb == "diff") return remote.Diff();
  if (ctx.verb == "history") return remote.History();
  if (ctx.verb == "digest") return remote.Digest();
  if (ctx.verb == "audit") return remote.Audit();
  if (ctx.verb == "explain") return remote.Explain();
  if (ctx.verb == "tail") return remote.Tail();
  if (ctx.verb == "find") return remote.Find();
  if (ctx.verb == "position-at") return remote.PositionAt();
  if (ctx.verb == "statement") return remote.Statement();
  if (ctx.verb == "postings") return remote.Postings();
  if (ctx.verb == "balances") return remote.Balances();
  if (ctx.verb == "backup") return remote.Backup();
  *ctx.err << "storeledger: verb '" << ctx.verb
           << "' does not work with --server (it needs the database itself); "
              "with --server: apply, state, diff, history, explain, digest, "
              "audit, tail, find, position-at, statement, postings, balances, "
              "backup\n";
  return kExitUsage;
}

}  // namespace storeledger
