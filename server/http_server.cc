#include "server/http_server.h"

#include <httplib.h>

#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/address.h"
#include "base/status_macros.h"
#include "server/server.h"

namespace storeledger {
namespace {

// The console's pages may load only what this server serves: no CDN, no
// inline script, nothing framed.
constexpr char kContentSecurityPolicy[] =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

absl::string_view ContentType(absl::string_view path) {
  if (absl::EndsWith(path, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(path, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(path, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(path, ".svg")) return "image/svg+xml";
  if (absl::EndsWith(path, ".png")) return "image/png";
  return "application/octet-stream";
}

const ConsoleAsset* FindAsset(absl::string_view path) {
  if (path == "/") path = "/index.html";
  for (size_t i = 0; i < kConsoleAssetsCount; ++i) {
    if (path == kConsoleAssets[i].path) return &kConsoleAssets[i];
  }
  return nullptr;
}

std::optional<absl::string_view> AuthorizationOf(const httplib::Request& req) {
  auto it = req.headers.find("Authorization");
  if (it == req.headers.end()) return std::nullopt;
  return absl::string_view(it->second);
}

void SetCommonHeaders(httplib::Response& res) {
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Content-Security-Policy", kContentSecurityPolicy);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpConsole>> HttpConsole::Start(
    HttpConsoleOptions options) {
  std::unique_ptr<HttpConsole> console(new HttpConsole());
  ASSIGN_OR_RETURN(auto host_port, SplitHostPort("--http", options.listen));
  console->host_ = host_port.first;
  const bool has_cert = !options.tls_cert_file.empty();
  if (has_cert != !options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together: give both or neither");
  }
  console->tls_ = has_cert;
  RETURN_IF_ERROR(CheckExposure("--http", options.listen, console->host_,
                                console->tls_, options.tokens != nullptr));
  if (console->tls_) {
    auto server = std::make_unique<httplib::SSLServer>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str());
    if (!server->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--http: cannot serve HTTPS with --tls-cert ", options.tls_cert_file,
          " and --tls-key ", options.tls_key_file));
    }
    console->server_ = std::move(server);
  } else {
    console->server_ = std::make_unique<httplib::Server>();
  }
  console->api_ = std::make_unique<ConsoleApi>(
      options.ledger, options.tokens,
      ConsoleScope{options.partition, options.partitions});
  console->options_ = std::move(options);
  console->Route();

  std::string bare = console->host_;
  if (bare.size() > 2 && bare.front() == '[')
    bare = bare.substr(1, bare.size() - 2);
  httplib::Server& server = *console->server_;
  if (host_port.second == 0) {
    console->port_ = server.bind_to_any_port(bare.c_str());
  } else if (server.bind_to_port(bare.c_str(), host_port.second)) {
    console->port_ = host_port.second;
  }
  if (console->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "--http: cannot listen on ", console->options_.listen,
        " (the port is in use, or the address is not this machine's)"));
  }
  console->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // Stop() only stops a server that is running: wait until it is.
  while (!server.is_running()) absl::SleepFor(absl::Milliseconds(1));
  return console;
}

void HttpConsole::Route() {
  httplib::Server& server = *server_;
  server.Get(R"(/api/.*)", [this](const httplib::Request& req,
                                  httplib::Response& res) {
    const absl::Time started = absl::Now();
    std::map<std::string, std::string> params;
    for (const auto& [name, value] : req.params) {
      params.emplace(name, value);  // the first of a repeated parameter
    }
    ApiReply reply = api_->Get(req.path, params, AuthorizationOf(req));
    SetCommonHeaders(res);
    res.set_header("Cache-Control", "no-store");
    if (!reply.attachment_name.empty()) {
      res.set_header(
          "Content-Disposition",
          absl::StrCat("attachment; filename=\"", reply.attachment_name, "\""));
    }
    res.status = reply.http_status;
    res.set_content(reply.body, reply.content_type.c_str());
    if (options_.metrics != nullptr && reply.http_status == 200) {
      options_.metrics->ObserveRead(req.path, absl::Now() - started);
    }
  });
  server.Get(
      "/metrics", [this](const httplib::Request& req, httplib::Response& res) {
        SetCommonHeaders(res);
        absl::StatusOr<Principal> principal =
            api_->Authorize(AuthorizationOf(req), Permission::kReadLog);
        if (!principal.ok()) {
          res.status = HttpStatusOf(principal.status().code());
          res.set_content(std::string(principal.status().message()) + "\n",
                          "text/plain");
          return;
        }
        if (options_.metrics == nullptr) {
          res.status = 404;
          res.set_content("no metrics in this server\n", "text/plain");
          return;
        }
        MetricsGauges gauges;
        if (options_.gauges) gauges = options_.gauges();
        res.set_content(options_.metrics->Render(gauges),
                        "text/plain; version=0.0.4; charset=utf-8");
      });
  server.Get(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
    SetCommonHeaders(res);
    const ConsoleAsset* asset = FindAsset(req.path);
    if (asset == nullptr) {
      res.status = 404;
      res.set_content(absl::StrCat("no page ", req.path, "\n"), "text/plain");
      return;
    }
    res.set_content(reinterpret_cast<const char*>(asset->data), asset->size,
                    std::string(ContentType(asset->path)).c_str());
  });
}

std::string HttpConsole::address() const {
  return absl::StrCat(host_, ":", port_);
}

void HttpConsole::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpConsole::~HttpConsole() { Stop(); }

}  // namespace storeledger
