// The JSON codec's parser: ParseCommandJson and its fast path, and the
// duplicate-key check protobuf lacks.
//
// Parse (FastJsonToMessage, used by ParseCommandJson). One pass over the line
// into the message. It accepts the canonical subset our producers write:
//   - one object per message; keys exactly a field's json_name (lowerCamel);
//     ' ', \t, \r, \n between tokens (JSON's whitespace);
//   - strings in double quotes, UTF-8 (no surrogates, overlong forms or
//     noncharacters), with the escapes \" \\ \/ \b \f \n \r \t;
//   - int32/uint32 (and their sint/fixed kinds) as JSON integers; 64-bit
//     integers as JSON integers or as decimal strings; no leading zeros, no
//     "-0", in range;
//   - bools as true/false; enums by exact value name;
//   - nested messages, repeated fields ([] included), a oneof member;
//   - google.protobuf.Timestamp as YYYY-MM-DDThh:mm:ss[.1-9 digits] followed
//     by Z or ±hh:mm (real calendar dates, result within 0001..9999).
// Anything else makes it give up, and ParseCommandJson hands the whole line to
// JsonStringToMessage, so acceptance, rejection and the error message stay
// protobuf's (except that a key given twice in one object is refused first,
// DuplicateKeyScanner): unknown or snake_case keys, duplicate keys, a second
// oneof member, null, floats or exponents, enum numbers, quoted 32-bit
// integers, bools or numbers as strings, \u and other escapes, raw control
// characters, other whitespace, maps, bytes, floating-point fields, well-known
// types other than Timestamp, proto2 or proto3-optional fields, nesting deeper
// than kFastDepthMax, trailing bytes. The checks after parsing (commandId,
// occurredAt, body) are the same code for both paths.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/limits.h"
#include "base/status_macros.h"
#include "base/time.h"
#include "core/policy.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "json/json.h"
#include "json/json_internal.h"

namespace storeledger {
namespace json_internal {
namespace {

// ---------------------------------------------------------------- parser

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Bytes a JSON string holds as they are on the fast path: printable ASCII
// but the quote and the backslash. A table, as strings are most of a line.
constexpr std::array<bool, 256> kStringPlainBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7F; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// The subset of RFC 3339 described at the top, as protobuf's ParseTime
// (stubs/time.cc) reads it. False for anything else, including times whose
// offset takes them outside 0001..9999.
bool ParseTimestamp(absl::string_view text, int64_t* seconds, int32_t* nanos) {
  const char* p = text.data();
  const char* const end = p + text.size();
  const auto number = [&](int width, int min, int max, int* value) {
    if (end - p < width) return false;
    int result = 0;
    for (int i = 0; i < width; ++i, ++p) {
      if (!IsDigit(*p)) return false;
      result = result * 10 + (*p - '0');
    }
    *value = result;
    return result >= min && result <= max;
  };
  const auto literal = [&](char c) {
    if (p == end || *p != c) return false;
    ++p;
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!number(4, 1, 9999, &year) || !literal('-') ||
      !number(2, 1, 12, &month) || !literal('-') || !number(2, 1, 31, &day) ||
      !literal('T') || !number(2, 0, 23, &hour) || !literal(':') ||
      !number(2, 0, 59, &minute) || !literal(':') ||
      !number(2, 0, 59, &second)) {
    return false;
  }
  static constexpr int kDaysInMonth[13] = {0,  31, 28, 31, 30, 31, 30,
                                           31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > kDaysInMonth[month] + (month == 2 && leap ? 1 : 0)) return false;
  int32_t fraction = 0;
  if (p < end && *p == '.') {
    ++p;
    int digits = 0;
    while (p < end && IsDigit(*p) && digits < 9) {
      fraction = fraction * 10 + (*p - '0');
      ++p;
      ++digits;
    }
    if (digits == 0 || (p < end && IsDigit(*p))) return false;
    for (; digits < 9; ++digits) fraction *= 10;
  }
  int64_t offset = 0;
  if (literal('Z')) {
  } else if (p < end && (*p == '+' || *p == '-')) {
    const bool behind_utc = *p == '-';
    ++p;
    int offset_hours, offset_minutes;
    if (!number(2, 0, 23, &offset_hours) || !literal(':') ||
        !number(2, 0, 59, &offset_minutes)) {
      return false;
    }
    offset = (offset_hours * 60 + offset_minutes) * 60;
    if (behind_utc) offset = -offset;
  } else {
    return false;
  }
  if (p != end) return false;
  const int64_t result = DaysFromCivil(year, month, day) * kSecondsPerDay +
                         hour * 3600 + minute * 60 + second - offset;
  if (result < kTimestampSecondsMin || result > kTimestampSecondsMax) {
    return false;
  }
  *seconds = result;
  *nanos = fraction;
  return true;
}

class Parser {
 public:
  explicit Parser(absl::string_view text)
      : p_(text.data()), end_(text.data() + text.size()) {}

  bool Document(const MessageTable& table, google::protobuf::Message* message) {
    SkipSpace();
    if (!Object(table, message, 0)) return false;
    SkipSpace();
    return p_ == end_;
  }

 private:
  void SkipSpace() {
    while (p_ < end_ &&
           (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) {
      ++p_;
    }
  }

  bool Consume(char c) {
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  // After a bare number or literal: protobuf's tokenizer would read on
  // through anything but these.
  bool AtDelimiter() const {
    if (p_ == end_) return false;
    switch (*p_) {
      case ',':
      case '}':
      case ']':
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        return true;
      default:
        return false;
    }
  }

  bool Object(const MessageTable& table, google::protobuf::Message* message,
              int depth) {
    if (depth > kFastDepthMax || !Consume('{')) return false;
    const Reflection* reflection = message->GetReflection();
    SkipSpace();
    if (Consume('}')) return true;
    uint64_t seen = 0;  // by field index: a key given twice goes to protobuf
    while (true) {
      absl::string_view key;
      if (!String(&key)) return false;
      auto it = table.by_json_name.find(key);
      if (it == table.by_json_name.end()) return false;
      const FieldEntry& entry = *it->second;
      const uint64_t bit = uint64_t{1} << entry.field->index();
      if ((seen & bit) != 0) return false;
      seen |= bit;
      if (entry.oneof != nullptr &&
          reflection->HasOneof(*message, entry.oneof)) {
        return false;
      }
      SkipSpace();
      if (!Consume(':')) return false;
      SkipSpace();
      if (!Field(entry, message, reflection, depth)) return false;
      SkipSpace();
      if (Consume('}')) return true;
      if (!Consume(',')) return false;
      SkipSpace();
    }
  }

  bool Field(const FieldEntry& entry, google::protobuf::Message* message,
             const Reflection* reflection, int depth) {
    if (!entry.field->is_repeated()) {
      return Value(entry, message, reflection, false, depth);
    }
    if (entry.kind == Kind::kMap || !Consume('[')) return false;
    SkipSpace();
    if (Consume(']')) return true;
    while (true) {
      if (!Value(entry, message, reflection, true, depth)) return false;
      SkipSpace();
      if (Consume(']')) return true;
      if (!Consume(',')) return false;
      SkipSpace();
    }
  }

  // One value: the singular field's, or a new element of the repeated one.
  bool Value(const FieldEntry& entry, google::protobuf::Message* message,
             const Reflection* reflection, bool add, int depth) {
    const FieldDescriptor* field = entry.field;
    switch (entry.kind) {
      case Kind::kString: {
        absl::string_view value;
        if (!String(&value)) return false;
        if (add) {
          reflection->AddString(message, field, std::string(value));
        } else {
          reflection->SetString(message, field, std::string(value));
        }
        return true;
      }
      case Kind::kBool: {
        bool value;
        if (Word("true")) {
          value = true;
        } else if (Word("false")) {
          value = false;
        } else {
          return false;
        }
        if (add) {
          reflection->AddBool(message, field, value);
        } else {
          reflection->SetBool(message, field, value);
        }
        return true;
      }
      case Kind::kInt32:
      case Kind::kUint32:
      case Kind::kInt64:
      case Kind::kUint64:
        return Integer(entry.kind, message, reflection, field, add);
      case Kind::kEnum: {
        absl::string_view name;
        if (!String(&name)) return false;
        auto it = entry.enumeration->number_by_name.find(name);
        if (it == entry.enumeration->number_by_name.end()) return false;
        if (add) {
          reflection->AddEnumValue(message, field, it->second);
        } else {
          reflection->SetEnumValue(message, field, it->second);
        }
        return true;
      }
      case Kind::kMessage:
        return Object(*entry.message,
                      add ? reflection->AddMessage(message, field)
                          : reflection->MutableMessage(message, field),
                      depth + 1);
      case Kind::kTimestamp: {
        absl::string_view text;
        int64_t seconds;
        int32_t nanos;
        if (!String(&text) || !ParseTimestamp(text, &seconds, &nanos)) {
          return false;
        }
        google::protobuf::Message* timestamp =
            add ? reflection->AddMessage(message, field)
                : reflection->MutableMessage(message, field);
        const Reflection* timestamp_reflection = timestamp->GetReflection();
        timestamp_reflection->SetInt64(timestamp, TimestampSecondsField(),
                                       seconds);
        timestamp_reflection->SetInt32(timestamp, TimestampNanosField(), nanos);
        return true;
      }
      default:  // bytes, maps, unsupported kinds
        return false;
    }
  }

  bool Word(absl::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        absl::string_view(p_, word.size()) != word) {
      return false;
    }
    const char* start = p_;
    p_ += word.size();
    if (AtDelimiter()) return true;
    p_ = start;  // "truefalse" is neither word: try the next from the start
    return false;
  }

  // A decimal integer for a field of `kind`: a JSON number, or for 64-bit
  // fields also a JSON string of one; no sign but '-', no leading zeros, no
  // "-0", in range.
  bool Integer(Kind kind, google::protobuf::Message* message,
               const Reflection* reflection, const FieldDescriptor* field,
               bool add) {
    const bool wide = kind == Kind::kInt64 || kind == Kind::kUint64;
    const bool quoted = wide && Consume('"');
    const bool negative = Consume('-');
    if (p_ == end_ || !IsDigit(*p_)) return false;
    uint64_t magnitude = 0;
    if (*p_ == '0') {
      ++p_;
      if (negative) return false;
    } else {
      while (p_ < end_ && IsDigit(*p_)) {
        const uint64_t digit = static_cast<uint64_t>(*p_ - '0');
        if (magnitude > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
          return false;
        }
        magnitude = magnitude * 10 + digit;
        ++p_;
      }
    }
    if (quoted ? !Consume('"') : !AtDelimiter()) return false;
    switch (kind) {
      case Kind::kInt32: {
        const uint64_t limit =
            negative ? uint64_t{1} << 31 : (uint64_t{1} << 31) - 1;
        if (magnitude > limit) return false;
        const auto value =
            static_cast<int32_t>(negative ? -static_cast<int64_t>(magnitude)
                                          : static_cast<int64_t>(magnitude));
        if (add) {
          reflection->AddInt32(message, field, value);
        } else {
          reflection->SetInt32(message, field, value);
        }
        return true;
      }
      case Kind::kUint32: {
        if (negative || magnitude > std::numeric_limits<uint32_t>::max()) {
          return false;
        }
        const auto value = static_cast<uint32_t>(magnitude);
        if (add) {
          reflection->AddUInt32(message, field, value);
        } else {
          reflection->SetUInt32(message, field, value);
        }
        return true;
      }
      case Kind::kInt64: {
        const uint64_t limit =
            negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
        if (magnitude > limit) return false;
        // Negating in unsigned arithmetic reaches INT64_MIN without overflow.
        const auto value =
            static_cast<int64_t>(negative ? 0 - magnitude : magnitude);
        if (add) {
          reflection->AddInt64(message, field, value);
        } else {
          reflection->SetInt64(message, field, value);
        }
        return true;
      }
      case Kind::kUint64:
        if (negative) return false;
        if (add) {
          reflection->AddUInt64(message, field, magnitude);
        } else {
          reflection->SetUInt64(message, field, magnitude);
        }
        return true;
      default:
        return false;
    }
  }

  // A JSON string in double quotes with the simple escapes; *value points
  // into the input, or into scratch_ when there were escapes (valid until the
  // next call).
  bool String(absl::string_view* value) {
    if (!Consume('"')) return false;
    const char* const start = p_;
    const char* p = p_;
    while (p < end_ && kStringPlainBytes[static_cast<unsigned char>(*p)]) ++p;
    p_ = p;
    if (p_ < end_ && *p_ == '"') {
      *value = absl::string_view(start, p_ - start);
      ++p_;
      return true;
    }
    scratch_.assign(start, p_);
    while (p_ < end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        *value = scratch_;
        return true;
      }
      if (c == '\\') {
        if (end_ - p_ < 2) return false;
        char unescaped;
        switch (p_[1]) {
          case '"':
          case '\\':
          case '/':
            unescaped = p_[1];
            break;
          case 'b':
            unescaped = '\b';
            break;
          case 'f':
            unescaped = '\f';
            break;
          case 'n':
            unescaped = '\n';
            break;
          case 'r':
            unescaped = '\r';
            break;
          case 't':
            unescaped = '\t';
            break;
          default:  // \u, and what JSON does not have but protobuf takes
            return false;
        }
        scratch_.push_back(unescaped);
        p_ += 2;
        continue;
      }
      if (c < 0x20 || c == 0x7F) return false;  // raw control characters
      if (c < 0x80) {
        scratch_.push_back(static_cast<char>(c));
        ++p_;
        continue;
      }
      uint32_t cp;
      const int length = DecodeUtf8(p_, end_, &cp);
      if (length == 0) return false;
      scratch_.append(p_, length);
      p_ += length;
    }
    return false;  // no closing quote
  }

  const char* p_;
  const char* const end_;
  std::string scratch_;
};

// ---------------------------------------------------------------- duplicates

// protobuf's JSON parser lets a key given twice in one object overwrite the
// first (the last one wins); other JSON readers keep the first. So that a
// line means one thing to every reader (its commandId is the idempotency
// key), a key repeated within one object is refused, whichever path parses
// the line: the fast parser gives up on it, and ProtobufJsonToCommand asks
// this scanner before protobuf parses. Keys of a message's object are
// compared as the field they name (protobuf takes the json_name and the
// proto name alike), map keys and keys of objects outside the schema as the
// strings they unescape to. Input that is not JSON is left to protobuf,
// which says what is wrong with it.
class DuplicateKeyScanner {
 public:
  explicit DuplicateKeyScanner(absl::string_view text)
      : p_(text.data()), end_(text.data() + text.size()) {}

  // The first key repeated within one object, described for a message.
  std::optional<std::string> Find(const Descriptor* root) {
    SkipSpace();
    Value(root, nullptr, 0);
    return duplicate_;
  }

 private:
  // protobuf's own parser refuses deeper input.
  static constexpr int kDepthMax = 100;

  void SkipSpace() {
    while (p_ < end_ &&
           (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) {
      ++p_;
    }
  }

  // One value. `message`: the message type an object here is (nullptr:
  // none, or outside the schema); `map`: the map field an object here is.
  // False when scanning stops (a duplicate, or input that is not JSON).
  bool Value(const Descriptor* message, const FieldDescriptor* map, int depth) {
    if (depth > kDepthMax || p_ == end_) return false;
    if (*p_ == '{') return Object(message, map, depth);
    if (*p_ == '[') {
      ++p_;
      SkipSpace();
      if (p_ < end_ && *p_ == ']') {
        ++p_;
        return true;
      }
      while (true) {
        if (!Value(message, map, depth + 1)) return false;
        SkipSpace();
        if (p_ < end_ && *p_ == ']') {
          ++p_;
          return true;
        }
        if (p_ == end_ || *p_ != ',') return false;
        ++p_;
        SkipSpace();
      }
    }
    if (*p_ == '"') {
      std::string ignored;
      return String(&ignored);
    }
    // A number or a literal: up to the next delimiter.
    while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' &&
           *p_ != '\t' && *p_ != '\n' && *p_ != '\r') {
      ++p_;
    }
    return true;
  }

  bool Object(const Descriptor* message, const FieldDescriptor* map,
              int depth) {
    ++p_;  // '{'
    SkipSpace();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    std::vector<std::string> seen;  // field names, or keys
    while (true) {
      std::string key;
      if (!String(&key)) return false;
      const FieldDescriptor* field = nullptr;
      if (message != nullptr && map == nullptr) {
        for (int i = 0; i < message->field_count() && field == nullptr; ++i) {
          if (message->field(i)->json_name() == key) field = message->field(i);
        }
        if (field == nullptr) field = message->FindFieldByName(key);
      }
      const std::string& identity = field != nullptr ? field->name() : key;
      if (std::find(seen.begin(), seen.end(), identity) != seen.end()) {
        duplicate_ = field != nullptr && key != field->json_name()
                         ? absl::StrCat("key \"", key, "\" names field ",
                                        field->json_name(), " a second time")
                         : absl::StrCat("key \"", key, "\" appears twice");
        return false;
      }
      seen.push_back(identity);
      SkipSpace();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      SkipSpace();
      // What an object in this value is.
      const Descriptor* inner = nullptr;
      const FieldDescriptor* inner_map = nullptr;
      if (map != nullptr) {
        const FieldDescriptor* value = map->message_type()->map_value();
        if (value->type() == FieldDescriptor::TYPE_MESSAGE) {
          inner = value->message_type();
        }
      } else if (field != nullptr &&
                 field->type() == FieldDescriptor::TYPE_MESSAGE) {
        if (field->is_map()) {
          inner_map = field;
        } else {
          inner = field->message_type();
        }
      }
      if (!Value(inner, inner_map, depth + 1)) return false;
      SkipSpace();
      if (p_ < end_ && *p_ == '}') {
        ++p_;
        return true;
      }
      if (p_ == end_ || *p_ != ',') return false;
      ++p_;
      SkipSpace();
    }
  }

  // A JSON string, unescaped into *out (code points other than ASCII as
  // AppendKeyCodePoint writes them, surrogate pairs joined). False at
  // anything JSON does not allow.
  bool String(std::string* out) {
    if (p_ == end_ || *p_ != '"') return false;
    ++p_;
    while (p_ < end_) {
      const char c = *p_++;
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) >= 0x80) {
        uint32_t cp;
        const int length = DecodeUtf8(p_ - 1, end_, &cp);
        if (length == 0) return false;
        p_ += length - 1;
        AppendKeyCodePoint(cp, out);
        continue;
      }
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ == end_) return false;
      const char e = *p_++;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t low;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!Hex4(&low) || low < 0xDC00 || low >= 0xE000) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return false;
          }
          AppendKeyCodePoint(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;  // no closing quote
  }

  bool Hex4(uint32_t* value) {
    if (end_ - p_ < 4) return false;
    *value = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = *p_++;
      uint32_t digit;
      if (h >= '0' && h <= '9') {
        digit = h - '0';
      } else if (h >= 'a' && h <= 'f') {
        digit = h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        digit = h - 'A' + 10;
      } else {
        return false;
      }
      *value = *value * 16 + digit;
    }
    return true;
  }

  // A code point of a key as compared: ASCII as itself, any other as
  // \u{hex}, whether written raw (UTF-8) or escaped, so that two spellings
  // of one key compare equal.
  static void AppendKeyCodePoint(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else {
      absl::StrAppend(out, "\\u{", absl::Hex(cp), "}");
    }
  }

  const char* p_;
  const char* const end_;
  std::optional<std::string> duplicate_;
};

// ---------------------------------------------------------------- Command

absl::Status ProtobufJsonToCommand(absl::string_view line,
                                   v1::Command* command) {
  command->Clear();
  if (std::optional<std::string> duplicate =
          DuplicateKeyScanner(line).Find(v1::Command::descriptor())) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON storeledger.v1.Command: ", *duplicate,
                     " in one object (a key may be given once)"));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  options.case_insensitive_enum_parsing = false;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(line),
                                                            command, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a JSON storeledger.v1.Command: ", status.message().ToString()));
  }
  return absl::OkStatus();
}

// What makes a parsed Command a command: the same checks for both paths.
absl::StatusOr<v1::Command> CheckCommand(v1::Command command) {
  if (command.command_id().empty()) {
    return absl::InvalidArgumentError("commandId is missing");
  }
  if (!command.has_occurred_at()) {
    return absl::InvalidArgumentError(
        "occurredAt is missing (RFC 3339, e.g. 2024-10-22T10:00:00+08:00)");
  }
  if (command.body_case() == v1::Command::BODY_NOT_SET) {
    return absl::InvalidArgumentError(
        "command body is missing (one of openStore, addProduct, placeOrder, "
        "...)");
  }
  return command;
}

}  // namespace

absl::StatusOr<v1::Command> ProtobufParseCommandJson(absl::string_view line) {
  v1::Command command;
  absl::Status status = ProtobufJsonToCommand(line, &command);
  if (!status.ok()) return status;
  return CheckCommand(std::move(command));
}

bool FastJsonToMessage(absl::string_view json,
                       google::protobuf::Message* message) {
  const MessageTable* table = TableFor(message->GetDescriptor());
  if (table == nullptr) return false;
  message->Clear();
  return Parser(json).Document(*table, message);
}

}  // namespace json_internal

absl::StatusOr<v1::Command> ParseCommandJson(absl::string_view line) {
  v1::Command command;
  if (!json_internal::FastJsonToMessage(line, &command)) {
    absl::Status status = json_internal::ProtobufJsonToCommand(line, &command);
    if (!status.ok()) return status;
  }
  return json_internal::CheckCommand(std::move(command));
}

}  // namespace storeledger
