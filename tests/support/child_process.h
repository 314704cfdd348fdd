// A child process for the reliability tests: the real storeledger binary (or
// a helper) run with posix_spawn, its stdout read through a pipe, killed at
// will, its peak memory read from wait4's rusage.
//
// Not thread-safe; one thread drives a ChildProcess. A second may write its
// stdin through stdin_fd() and then CloseStdin(), if it is joined before the
// first calls Wait().
#ifndef STORELEDGER_TESTS_SUPPORT_CHILD_PROCESS_H_
#define STORELEDGER_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace storeledger::testing {

struct ChildOptions {
  // argv[0] is the program's path. Required. Default: empty.
  std::vector<std::string> argv;
  // stdin: this file, or a pipe the parent writes (stdin_fd()) when
  // `stdin_pipe`, or /dev/null. Default: empty and false (/dev/null).
  std::string stdin_path;
  bool stdin_pipe = false;
  // stderr goes to this file (appended); /dev/null when empty. Default:
  // empty.
  std::string stderr_path;
  // Keep at most this many bytes of stdout in out(); the rest is counted
  // (bytes_read(), lines_read()) and dropped, so a long run stays small.
  // Default: 64 MiB.
  size_t out_bytes_max = 64 << 20;
};

class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const ChildOptions& options);
  ~ChildProcess();  // kills and reaps the child if it is still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The write end of the child's stdin (stdin_pipe), or -1.
  int stdin_fd() const { return stdin_fd_; }
  void CloseStdin();

  // Reads stdout until `deadline` or end of file; true at end of file.
  bool ReadUntil(absl::Time deadline);
  void Kill(int signal);
  // Reads stdout to its end, then reaps the child: its wait status.
  int Wait();

  // Complete lines read so far ("\n"-terminated; a partial last line is not
  // included), and everything read.
  std::vector<std::string> CompleteLines() const;
  const std::string& out() const { return out_; }
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t lines_read() const { return lines_read_; }
  // Peak resident set of the child, from wait4 (valid after Wait()).
  int64_t max_rss_kb() const { return usage_.ru_maxrss; }

 private:
  ChildProcess() = default;
  // One read of available output; false at end of file.
  bool ReadSome();

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stdin_fd_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  size_t out_bytes_max_ = 0;
  std::string out_;
  uint64_t bytes_read_ = 0;
  uint64_t lines_read_ = 0;
  struct rusage usage_ = {};
};

// "exited 0", "killed by signal 9", ... for messages.
std::string DescribeWaitStatus(int status);

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_CHILD_PROCESS_H_
