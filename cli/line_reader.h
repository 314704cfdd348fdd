// Reads lines of at most a given length from a stream, in bounded memory: a
// longer line is reported as too long (and skipped to its end), never held.
#ifndef STORELEDGER_CLI_LINE_READER_H_
#define STORELEDGER_CLI_LINE_READER_H_

#include <cstddef>
#include <istream>
#include <string>

namespace storeledger {

class LineReader {
 public:
  LineReader(std::istream* in, size_t line_bytes_max)
      : in_(in), line_bytes_max_(line_bytes_max) {}

  // Reads the next line into *line (without '\n' or a trailing '\r').
  // Returns false at end of input. *too_long is set when the line exceeded
  // the limit; *line then holds only its first bytes.
  bool Next(std::string* line, bool* too_long) {
    line->clear();
    *too_long = false;
    bool any = false;
    char buffer[64 * 1024];
    while (true) {
      in_->getline(buffer, sizeof(buffer));
      const size_t got = static_cast<size_t>(in_->gcount());
      const bool eof = in_->eof();
      const bool full = in_->fail() && !eof;  // buffer filled, line goes on
      // Without eof or a full buffer, getline consumed (and counted) '\n'.
      const size_t length = (eof || full) ? got : got - 1;
      if (got > 0) any = true;
      if (!*too_long) {
        if (line->size() + length > line_bytes_max_) {
          *too_long = true;
        } else {
          line->append(buffer, length);
        }
      }
      if (full) {
        in_->clear();
        continue;
      }
      if (eof && !any) return false;
      break;
    }
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
  }

 private:
  std::istream* in_;
  size_t line_bytes_max_;
};

}  // namespace storeledger

#endif  // STORELEDGER_CLI_LINE_READER_H_
