#include "tests/support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace storeledger::testing {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return absl::StrCat("wait status ", status);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const ChildOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("no argv");
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->out_bytes_max_ = options.out_bytes_max;

  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Errno("pipe2");
  int in_pipe[2] = {-1, -1};
  if (options.stdin_pipe && ::pipe2(in_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return Errno("pipe2");
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.stdin_pipe) {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  } else {
    const std::string in =
        options.stdin_path.empty() ? "/dev/null" : options.stdin_path;
    posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  const std::string err =
      options.stderr_path.empty() ? "/dev/null" : options.stderr_path;
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);

  std::vector<char*> argv;
  for (const std::string& arg : options.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  const int spawned = ::posix_spawn(&child->pid_, argv[0], &actions, nullptr,
                                    argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  if (options.stdin_pipe) ::close(in_pipe[0]);
  if (spawned != 0) {
    ::close(out_pipe[0]);
    if (options.stdin_pipe) ::close(in_pipe[1]);
    errno = spawned;
    return Errno(absl::StrCat("posix_spawn ", options.argv[0]));
  }
  child->stdout_fd_ = out_pipe[0];
  child->stdin_fd_ = options.stdin_pipe ? in_pipe[1] : -1;
  return child;
}

ChildProcess::~ChildProcess() {
  CloseStdin();
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

void ChildProcess::CloseStdin() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  stdin_fd_ = -1;
}

bool ChildProcess::ReadSome() {
  char buffer[64 * 1024];
  const ssize_t n = ::read(stdout_fd_, buffer, sizeof(buffer));
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  bytes_read_ += static_cast<uint64_t>(n);
  lines_read_ += static_cast<uint64_t>(std::count(buffer, buffer + n, '\n'));
  if (out_.size() < out_bytes_max_) out_.append(buffer, static_cast<size_t>(n));
  return true;
}

bool ChildProcess::ReadUntil(absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    // Wake at least once a second; an infinite deadline waits in steps.
    const int timeout_ms =
        left <= absl::ZeroDuration() ? 0
        : left >= absl::Seconds(1)
            ? 1000
            : static_cast<int>(absl::ToInt64Milliseconds(left) + 1);
    struct pollfd fd = {stdout_fd_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, timeout_ms);
    if (ready > 0) {
      if (!ReadSome()) return true;
      continue;
    }
    if (ready < 0 && errno != EINTR) return false;
    if (absl::Now() >= deadline) return false;
  }
}

void ChildProcess::Kill(int signal) {
  if (!reaped_ && pid_ > 0) ::kill(pid_, signal);
}

int ChildProcess::Wait() {
  if (reaped_) return wait_status_;
  CloseStdin();
  while (ReadSome()) {
  }
  while (::wait4(pid_, &wait_status_, 0, &usage_) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return wait_status_;
}

std::vector<std::string> ChildProcess::CompleteLines() const {
  const size_t end = out_.rfind('\n');
  if (end == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(out_).substr(0, end), '\n');
}

}  // namespace storeledger::testing
