#include "cli/client.h"
#include "cli/tail_flags.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/history_filter.h"
#include "cli/line_reader.h"
#include "core/limits.h"
#include "core/policy.h"
#include "google/protobuf/io/coded_stream.h"
#include "json/json.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {
namespace {

constexpr char kResumePositionMetadata[] = "storeledger-resume-position";

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

// gRPC takes any bytes as root certificates and fails only when it
// connects, with "empty address list" and lines of its own log; OpenSSL says
// at once whether the file holds a certificate.
absl::Status CheckCaCertificates(const std::string& path,
                                 const std::string& pem) {
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (certificate != nullptr) {
    X509_free(certificate);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--tls-ca ", path, ": not a PEM certificate (",
      absl::StrContains(pem, "PRIVATE KEY-----")
          ? "it holds a private key; give the certificate of the CA that "
            "signed the server's"
          : "no -----BEGIN CERTIFICATE----- block",
      ")"));
}

class Remote {
 public:
  explicit Remote(CliContext& ctx) : ctx_(ctx) {}

  absl::Status Connect() {
    const std::string address = *ctx_.flags.Get("server");
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        grpc::InsecureChannelCredentials();
    if (std::optional<std::string> ca = ctx_.flags.Get("tls-ca")) {
      std::ifstream file(*ca);
      if (!file) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls-ca ", *ca, ": cannot read the file"));
      }
      std::stringstream pem;
      pem << file.rdbuf();
      if (absl::Status s = CheckCaCertificates(*ca, pem.str()); !s.ok()) {
        return s;
      }
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = pem.str();
      credentials = grpc::SslCredentials(ssl);
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

  int Apply();
  int State();
  int History();
  int Digest();
  int Tail();
  int Backup();

 private:
  CliContext& ctx_;
  std::string token_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
};

int Remote::Apply() {
  const std::vector<std::string>& args = ctx_.flags.positional();
  if (args.size() > 2) {
    return ctx_.Fail(absl::InvalidArgumentError("apply takes at most one FILE"));
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
      pending.push_back({line_number,
                         InvalidResult("", absl::StrCat("line is longer than ",
                                                        kInputLineBytesMax,
                                                        " bytes"))});
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
        absl::StrCat(status.error_message(),
                     pending.empty()
                         ? ""
                         : absl::StrCat(" (results from line ",
                                        pending.front().line,
                                        " on were not received)"))));
  }
  return any_invalid ? kExitUsage : kExitOk;
}

int Remote::State() {
  if (absl::Status s = ctx_.flags.CheckKnown(
          {"store", "as-of", "position", "server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  std::optional<std::string> store = ctx_.flags.Get("store");
  if (!store) return ctx_.Fail(absl::InvalidArgumentError("--store is required"));
  v1::GetStoreRequest request;
  request.set_store_id(*store);
  absl::StatusOr<std::optional<absl::Time>> t = ctx_.flags.GetTime("as-of");
  if (!t.ok()) return ctx_.Fail(t.status());
  if (t->has_value()) *request.mutable_as_of() = ToProto(**t);
  ctx_.EchoTime("as-of");
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx_.flags.GetUint("position");
  if (!position.ok()) return ctx_.Fail(position.status());
  if (position->has_value()) request.set_position(**position);
  grpc::ClientContext context;
  Prepare(&context);
  v1::StoreState state;
  grpc::Status status = stub_->GetStore(&context, request, &state);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  *ctx_.out << ToJson(state) << "\n";
  return kExitOk;
}

int Remote::History() {
  if (absl::Status s = ctx_.flags.CheckKnown(
          {"store", "order", "product", "withdrawal", "type", "from", "to",
           "from-position", "limit", "include-rejections", "server", "token",
           "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  std::optional<std::string> store = ctx_.flags.Get("store");
  if (!store) return ctx_.Fail(absl::InvalidArgumentError("--store is required"));
  absl::StatusOr<HistoryFilter> filter = HistoryFilter::FromFlags(ctx_.flags);
  if (!filter.ok()) return ctx_.Fail(filter.status());
  absl::StatusOr<std::optional<uint64_t>> limit = ctx_.flags.GetUint("limit");
  if (!limit.ok()) return ctx_.Fail(limit.status());
  const bool include_rejections = ctx_.flags.Has("include-rejections");
  // The server sends the store's whole history, facts and refusals merged by
  // position as the embedded verb merges them; the filters are applied here,
  // by the same code as the embedded verb's.
  v1::ReadStreamRequest request;
  request.set_store_id(*store);
  request.set_include_rejections(include_rejections);
  grpc::ClientContext context;
  Prepare(&context);
  std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
      stub_->ReadStream(&context, request);
  v1::Envelope envelope;
  uint64_t printed = 0;
  // The embedded verb fails with NOT_FOUND when the store has no events and
  // no refusal passes the filters; a fact, selected or not, means it has.
  bool found = false;
  bool stopped = false;
  while (reader->Read(&envelope)) {
    const bool selected = filter->Selects(envelope);
    found = found || selected || !envelope.payload().has_command_rejected();
    if (limit->has_value() && printed >= **limit && found) {
      stopped = true;
      context.TryCancel();
      break;
    }
    if (!selected || (limit->has_value() && printed >= **limit)) continue;
    *ctx_.out << ToJson(envelope) << "\n";
    ++printed;
  }
  if (stopped) {
    while (reader->Read(&envelope)) {}
  }
  grpc::Status status = reader->Finish();
  ctx_.out->flush();
  if (!status.ok() && !stopped) return ctx_.Fail(FromGrpc(status));
  if (!found) return ctx_.Fail(HistoryNotFound(*store, include_rejections));
  if (printed == 0 && limit->value_or(1) != 0) {
    SayHistoryFilteredOut(ctx_, *store);
  }
  return kExitOk;
}

int Remote::Digest() {
  if (absl::Status s = ctx_.flags.CheckKnown({"server", "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  grpc::ClientContext context;
  Prepare(&context);
  v1::Digest digest;
  grpc::Status status = stub_->Digest(&context, v1::DigestRequest(), &digest);
  if (!status.ok()) return ctx_.Fail(FromGrpc(status));
  if (digest.partitions() <= 1) {
    *ctx_.out << ToJson(digest) << "\n";
    return kExitOk;
  }
  // A partitioned cluster (docs/cluster.md "Partitions"): one line per
  // partition, asked through this node, then the cluster's events in all.
  uint64_t events = 0;
  for (uint32_t p = 0; p < digest.partitions(); ++p) {
    grpc::ClientContext one;
    Prepare(&one);
    v1::DigestRequest request;
    request.set_partition(p);
    v1::Digest of;
    status = stub_->Digest(&one, request, &of);
    if (!status.ok()) return ctx_.Fail(FromGrpc(status));
    *ctx_.out << "{\"partition\":" << p << ",\"position\":" << of.position()
              << ",\"hash\":\"" << of.hash() << "\"}\n";
    events += of.position();
  }
  *ctx_.out << "{\"partitions\":" << digest.partitions()
            << ",\"events\":" << events << "}\n";
  return kExitOk;
}

int Remote::Backup() {
  if (absl::Status s = ctx_.flags.CheckKnown({"name", "server", "token",
                                              "tls-ca"});
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

int Remote::Tail() {
  if (absl::Status s = ctx_.flags.CheckKnown({"from-position", "format",
                                              "follow", "max-events", "server",
                                              "token", "tls-ca"});
      !s.ok()) {
    return ctx_.Fail(s);
  }
  absl::StatusOr<TailFlags> tail = TailFlags::Parse(ctx_.flags);
  if (!tail.ok()) return ctx_.Fail(tail.status());
  const bool follow = tail->follow;

  uint64_t last = tail->from_position;
  uint64_t emitted = 0;
  auto done = [&] {
    return tail->max_events.has_value() && emitted >= *tail->max_events;
  };
  remote_tail_stop = 0;
  void (*previous_int)(int) = SIG_DFL;
  void (*previous_term)(int) = SIG_DFL;
  if (follow) {
    previous_int = std::signal(SIGINT, RequestRemoteTailStop);
    previous_term = std::signal(SIGTERM, RequestRemoteTailStop);
  }
  absl::Status result;
  while (true) {
    grpc::ClientContext context;
    Prepare(&context);
    v1::SubscribeRequest request;
    request.set_from_position(last);
    request.set_catch_up_only(!follow);
    std::atomic<bool> call_over{false};
    std::thread watcher;
    if (follow) {
      watcher = std::thread([&] {
        while (!call_over) {
          if (remote_tail_stop) {
            context.TryCancel();
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
    }
    std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
        stub_->Subscribe(&context, request);
    v1::Envelope envelope;
    bool stopped = false;
    while (!done() && reader->Read(&envelope)) {
      if (tail->delimited) {
        WriteDelimited(*ctx_.out, envelope.SerializeAsString());
      } else {
        *ctx_.out << ToJson(envelope) << "\n";
      }
      ctx_.out->flush();
      last = envelope.position();
      ++emitted;
    }
    if (done()) {
      stopped = true;
      context.TryCancel();
      while (reader->Read(&envelope)) {}
    }
    grpc::Status status = reader->Finish();
    call_over = true;
    if (watcher.joinable()) watcher.join();
    if (stopped || remote_tail_stop) break;
    // Cut off for falling behind: resume from the last position received.
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
        context.GetServerTrailingMetadata().count(kResumePositionMetadata)) {
      continue;
    }
    result = FromGrpc(status);
    break;
  }
  if (follow) {
    std::signal(SIGINT, previous_int);
    std::signal(SIGTERM, previous_term);
  }
  ctx_.out->flush();
  if (!result.ok()) return ctx_.Fail(result);
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
  if (ctx.verb == "history") return remote.History();
  if (ctx.verb == "digest") return remote.Digest();
  if (ctx.verb == "tail") return remote.Tail();
  if (ctx.verb == "backup") return remote.Backup();
  *ctx.err << "storeledger: verb '" << ctx.verb
           << "' does not work with --server (it needs the database itself); "
              "with --server: apply, state, history, digest, tail, backup\n";
  return kExitUsage;
}

}  // namespace storeledger
