// The JSON codec: protobuf's JSON mapping, with a fast path each way.
//
// Why: `apply` reads one Command and prints one CommandResult per line, and
// protobuf 3.21's JsonStringToMessage / MessageToJsonString (a type resolver,
// an object-writer pipeline, a binary round trip, and for the printer a tree
// of every field) cost ~13 µs and ~8 µs a line, more than the append path
// behind them. The fast paths walk the message with reflection instead, from
// per-type tables built once (descriptor-driven: no per-command code). They are
// an optimisation of the one codec, not a second format: their answer is
// protobuf's answer, and whatever they are not certain of goes to protobuf.
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
// DuplicateKeyScanner): unknown or snake_case keys, duplicate keys, a second oneof
// member, null, floats or exponents, enum numbers, quoted 32-bit integers,
// bools or numbers as strings, \u and other escapes, raw control characters,
// other whitespace, maps, bytes, floating-point fields, well-known types other
// than Timestamp, proto2 or proto3-optional fields, nesting deeper than
// kFastDepthMax, trailing bytes. The checks after parsing (commandId,
// occurredAt, body) are the same code for both paths.
//
// Print (FastMessageToJson, used by ToJson for every message). Output is
// byte-identical to MessageToJsonString with always_print_primitive_fields,
// which in 3.21 renders through DefaultValueObjectWriter. Its rules, read from
// protobuf's source (util/internal/default_value_objectwriter.cc,
// protostream_objectsource.cc, json_objectwriter.cc, json_escaping.cc,
// stubs/time.cc) and pinned by the differential tests:
//   - fields in declaration order; scalars always (zero values included),
//     repeated fields always ([] when empty), maps always ({} when empty),
//     sub-messages only when set ({} when set but empty);
//   - except that a set Timestamp field and a set scalar oneof member have no
//     place in that order: they come after all the others, by field number
//     (the writer appends them as new nodes);
//   - int64/uint64 as quoted decimals, 32-bit integers bare, bools bare, enums
//     by the first value name declared for the number (an unknown number
//     bare), bytes as padded standard base64;
//   - strings: \" \\ \b \f \n \r \t, \u00xx for the other C0 controls, < > DEL
//     and U+0080..U+009F, \uxxxx (lowercase hex; surrogate pairs above
//     U+FFFF) for the handful of invisible code points json_escaping.cc lists
//     (U+00AD, U+0600..0603, U+06DD, U+070F, U+17B4/5, U+200B..200F,
//     U+2028..202E, U+2060..2064, U+206A..206F, U+FEFF, U+FFF9..FFFB,
//     U+1D173..1D17A, U+E0001, U+E0020..E007F); everything else raw;
//   - Timestamps as UTC with Z and 0, 3, 6 or 9 fractional digits.
// It gives up, and ToJson prints with protobuf, for the message as a whole
// when it meets: a float or double field (protobuf's shortest-round-trip
// formatting is not worth copying; only RebuildSummary has them), a set
// well-known type other than Timestamp (Any, Struct, Duration, wrappers...),
// a map with two or more entries (they print in the hash map's order), a
// string that is not UTF-8 as the parser accepts it (protobuf logs it and
// drops bytes), a Timestamp outside 0001..9999 or with nanos outside
// [0, 1e9) (protobuf fails), unknown fields, proto2 or proto3-optional
// fields, nesting deeper than kFastDepthMax, a message of a descriptor pool
// other than the generated one, or a well-known type at the root.
//
// How equivalence is tested (tests/json_codec_test.cc, fuzz/): every line of a
// generated simulate stream takes the fast path to a message
// MessageDifferencer::Equals to protobuf's parse, and every command prints
// as protobuf prints it; seeded random messages of every type in our schema
// (Commands, CommandResults, Envelopes, StoreStates, ...: random unicode,
// escapes, control characters, bad UTF-8, extreme integers, unknown enum
// numbers, every oneof case, timestamps with nanos) print byte for byte as
// protobuf prints them and parse back to themselves; randomly edited lines
// parse as protobuf parses them; every code point, and every byte at every
// offset of a string, is printed and parsed both ways; hand-written lines
// outside the subset fall back and give protobuf's exact error. The fuzzer
// holds ParseCommandJson against ProtobufParseCommandJson and ToJson against
// ProtobufToJson for any input.
#include "ledger/json.h"

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
#include "core/limits.h"
#include "core/policy.h"
#include "base/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"

namespace storeledger {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::OneofDescriptor;
using ::google::protobuf::Reflection;

// Nesting deeper than this goes to protobuf (whose own limits are 64 when
// printing and 100 when parsing); our schema nests at most 6 deep.
constexpr int kFastDepthMax = 32;

// google.protobuf.Timestamp's range (core/limits.h); protobuf refuses to
// print a time outside it.
constexpr int64_t kTimestampSecondsMin = kTimeSecondsMin;
constexpr int64_t kTimestampSecondsMax = kTimeSecondsMax;
constexpr int32_t kNanosPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

// ---------------------------------------------------------------- UTF-8

// Decodes the multi-byte UTF-8 sequence at p (*p >= 0x80) into *cp and
// returns its length, or 0 when it is not UTF-8 that every validator accepts
// alike: overlong forms, surrogates, code points above U+10FFFF and
// noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF) all return 0, so both
// fast paths leave such strings to protobuf.
int DecodeUtf8(const char* p, const char* end, uint32_t* cp) {
  const auto byte = [&](int i) { return static_cast<unsigned char>(p[i]); };
  const auto continuation = [&](int i) {
    return p + i < end && (byte(i) & 0xC0) == 0x80;
  };
  const unsigned char lead = byte(0);
  uint32_t value;
  int length;
  if (lead >= 0xC2 && lead <= 0xDF) {
    if (!continuation(1)) return 0;
    value = ((lead & 0x1Fu) << 6) | (byte(1) & 0x3Fu);
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    value =
        ((lead & 0x0Fu) << 12) | ((byte(1) & 0x3Fu) << 6) | (byte(2) & 0x3Fu);
    if (value < 0x800 || (value >= 0xD800 && value <= 0xDFFF)) return 0;
    length = 3;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    value = ((lead & 0x07u) << 18) | ((byte(1) & 0x3Fu) << 12) |
            ((byte(2) & 0x3Fu) << 6) | (byte(3) & 0x3Fu);
    if (value < 0x10000 || value > 0x10FFFF) return 0;
    length = 4;
  } else {
    return 0;  // a continuation byte, C0/C1 (overlong) or F5..FF
  }
  if ((value >= 0xFDD0 && value <= 0xFDEF) || (value & 0xFFFE) == 0xFFFE) {
    return 0;
  }
  *cp = value;
  return length;
}

// ---------------------------------------------------------------- printing

// The printer's output: a std::string written through a cursor, so that a
// byte costs a compare and a store rather than a call (std::string::push_back
// is not inlined). Finish() trims the string to what was written.
class Sink {
 public:
  explicit Sink(std::string* out) : out_(out), size_(out->size()) {}

  ABSL_ATTRIBUTE_ALWAYS_INLINE void Put(char c) {
    Reserve(1);
    (*out_)[size_++] = c;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Put(absl::string_view text) {
    if (text.empty()) return;  // (its data() may be null, memcpy's may not)
    Reserve(text.size());
    std::memcpy(out_->data() + size_, text.data(), text.size());
    size_ += text.size();
  }
  void Put(const char* begin, const char* end) {
    Put(absl::string_view(begin, static_cast<size_t>(end - begin)));
  }
  void Put(const char* text, size_t length) {
    Put(absl::string_view(text, length));
  }
  void Finish() { out_->resize(size_); }

 private:
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Reserve(size_t length) {
    if (ABSL_PREDICT_FALSE(size_ + length > out_->size())) Grow(length);
  }
  ABSL_ATTRIBUTE_NOINLINE void Grow(size_t length) {
    // 256: a CommandResult line in one allocation.
    out_->resize(std::max<size_t>({2 * out_->size(), size_ + length, 256}));
  }

  std::string* const out_;
  size_t size_;  // bytes written; out_->size() is what is allocated
};

constexpr char kHexDigits[] = "0123456789abcdef";

// Bytes protobuf prints as they are: printable ASCII but " \ < >
// (json_escaping.cc's kCommonEscapes is empty for exactly these). A table:
// strings are most of a line.
constexpr std::array<bool, 256> kPrintedPlainBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7F; ++c) {
    plain[c] = c != '"' && c != '\\' && c != '<' && c != '>';
  }
  return plain;
}();

// Code points at or above U+00A0 that json_escaping.cc still escapes (it
// calls them invisible or dangerous to JavaScript).
bool IsEscapedAboveC1Controls(uint32_t cp) {
  switch (cp) {
    case 0x00AD:
    case 0x06DD:
    case 0x070F:
    case 0x17B4:
    case 0x17B5:
    case 0xFEFF:
    case 0xFFF9:
    case 0xFFFA:
    case 0xFFFB:
    case 0xE0001:
      return true;
    default:
      return (cp >= 0x0600 && cp <= 0x0603) || (cp >= 0x200B && cp <= 0x200F) ||
             (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
             (cp >= 0x206A && cp <= 0x206F) ||
             (cp >= 0x1D173 && cp <= 0x1D17A) ||
             (cp >= 0xE0020 && cp <= 0xE007F);
  }
}

void AppendUnicodeEscape16(uint32_t unit, Sink* out) {
  const char escape[6] = {'\\',
                          'u',
                          kHexDigits[(unit >> 12) & 0xF],
                          kHexDigits[(unit >> 8) & 0xF],
                          kHexDigits[(unit >> 4) & 0xF],
                          kHexDigits[unit & 0xF]};
  out->Put(escape, sizeof(escape));
}

// `cp` escaped as protobuf does: a UTF-16 surrogate pair above U+FFFF.
void AppendUnicodeEscape(uint32_t cp, Sink* out) {
  if (cp < 0x10000) {
    AppendUnicodeEscape16(cp, out);
    return;
  }
  AppendUnicodeEscape16(0xD800 + ((cp - 0x10000) >> 10), out);
  AppendUnicodeEscape16(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
}

void AppendAsciiEscape(unsigned char c, Sink* out) {
  switch (c) {
    case '"':
      out->Put("\\\"");
      return;
    case '\\':
      out->Put("\\\\");
      return;
    case '\b':
      out->Put("\\b");
      return;
    case '\t':
      out->Put("\\t");
      return;
    case '\n':
      out->Put("\\n");
      return;
    case '\f':
      out->Put("\\f");
      return;
    case '\r':
      out->Put("\\r");
      return;
    default:  // other C0 controls, <, >, DEL
      AppendUnicodeEscape16(c, out);
  }
}

// Appends `value` as a JSON string, quotes included, escaped exactly as
// protobuf 3.21 escapes it. False when `value` is not UTF-8 DecodeUtf8
// accepts (protobuf would drop bytes and log).
bool AppendQuoted(absl::string_view value, Sink* out) {
  out->Put('"');
  const char* p = value.data();
  const char* const end = p + value.size();
  const char* plain = p;  // start of the run not yet copied
  while (p < end) {
    const auto c = static_cast<unsigned char>(*p);
    if (kPrintedPlainBytes[c]) {
      ++p;
      continue;
    }
    if (c < 0x80) {
      out->Put(plain, p);
      AppendAsciiEscape(c, out);
      plain = ++p;
      continue;
    }
    uint32_t cp;
    const int length = DecodeUtf8(p, end, &cp);
    if (length == 0) return false;
    if (cp < 0xA0 || IsEscapedAboveC1Controls(cp)) {
      out->Put(plain, p);
      AppendUnicodeEscape(cp, out);
      plain = p + length;
    }
    p += length;
  }
  out->Put(plain, p);
  out->Put('"');
  return true;
}

// AppendQuoted into a plain string, for the tables.
bool QuotedString(absl::string_view value, std::string* out) {
  Sink sink(out);
  const bool ok = AppendQuoted(value, &sink);
  sink.Finish();
  return ok;
}

template <typename Int>
void AppendInt(Int value, Sink* out) {
  char buffer[24];
  const std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->Put(buffer, result.ptr);
}

template <typename Int>
void AppendQuotedInt(Int value, Sink* out) {
  out->Put('"');
  AppendInt(value, out);
  out->Put('"');
}

// `value` (>= 0) in exactly `width` decimal digits, zero-padded, at `at`.
void FormatDigits(int value, int width, char* at) {
  for (int i = width - 1; i >= 0; --i) {
    at[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's
// days_from_civil / civil_from_days): exact over protobuf's whole range.
int64_t DaysFromCivil(int64_t year, int month, int day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year =
      (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

void CivilFromDays(int64_t days, int64_t* year, int* month, int* day) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t day_of_era = days - era * 146097;
  const int64_t year_of_era = (day_of_era - day_of_era / 1460 +
                               day_of_era / 36524 - day_of_era / 146096) /
                              365;
  const int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t shifted_month = (5 * day_of_year + 2) / 153;
  *day = static_cast<int>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  *month = static_cast<int>(shifted_month < 10 ? shifted_month + 3
                                               : shifted_month - 9);
  *year = year_of_era + era * 400 + (*month <= 2);
}

// A Timestamp as protobuf's FormatTime writes it (stubs/time.cc). False
// outside the range protobuf prints.
bool AppendTimestamp(int64_t seconds, int32_t nanos, Sink* out) {
  if (seconds < kTimestampSecondsMin || seconds > kTimestampSecondsMax ||
      nanos < 0 || nanos >= kNanosPerSecond) {
    return false;
  }
  int64_t days = seconds / kSecondsPerDay;
  int64_t second_of_day = seconds % kSecondsPerDay;
  if (second_of_day < 0) {
    second_of_day += kSecondsPerDay;
    --days;
  }
  int64_t year;
  int month;
  int day;
  CivilFromDays(days, &year, &month, &day);
  const int hms = static_cast<int>(second_of_day);
  char text[] = "\"0000-00-00T00:00:00";
  FormatDigits(static_cast<int>(year), 4, text + 1);
  FormatDigits(month, 2, text + 6);
  FormatDigits(day, 2, text + 9);
  FormatDigits(hms / 3600, 2, text + 12);
  FormatDigits(hms / 60 % 60, 2, text + 15);
  FormatDigits(hms % 60, 2, text + 18);
  out->Put(text, sizeof(text) - 1);
  if (nanos != 0) {
    // As few of 3, 6 or 9 digits as hold the value exactly.
    char fraction[] = ".000000000";
    int digits = 9;
    int value = nanos;
    if (nanos % 1'000'000 == 0) {
      digits = 3;
      value = nanos / 1'000'000;
    } else if (nanos % 1'000 == 0) {
      digits = 6;
      value = nanos / 1'000;
    }
    FormatDigits(value, digits, fraction + 1);
    out->Put(fraction, 1 + digits);
  }
  out->Put("Z\"");
  return true;
}

// ---------------------------------------------------------------- tables

// What a field is to the fast paths. kUnsupported: they give up on meeting it
// (except an unset message field, which protobuf does not print either).
enum class Kind : uint8_t {
  kUnsupported,
  kString,
  kBytes,  // printed; parsing gives up (base64 has many spellings)
  kBool,
  kInt32,
  kUint32,
  kInt64,
  kUint64,
  kEnum,
  kMessage,
  kTimestamp,
  kMap,  // string keys, scalar values; printed with at most one entry
};

struct EnumTable {
  // The printed name ("NAME", quotes included) of the first value declared
  // with each number.
  absl::flat_hash_map<int, std::string> quoted_name_by_number;
  absl::flat_hash_map<std::string, int> number_by_name;
};

struct MessageTable;

struct FieldEntry {
  const FieldDescriptor* field = nullptr;
  Kind kind = Kind::kUnsupported;
  const OneofDescriptor* oneof = nullptr;  // a real oneof, not proto3 optional
  // ,"jsonName": ready to append (from its second byte for a first field).
  std::string quoted_name;
  const MessageTable* message = nullptr;   // kMessage
  const EnumTable* enumeration = nullptr;  // kEnum; kMap with enum values
  // kMap: the entry's value field and its kind.
  const FieldDescriptor* map_value = nullptr;
  Kind map_value_kind = Kind::kUnsupported;
};

// Oneofs a message may have for the fast paths (ours have at most one).
constexpr int kOneofsMax = 8;

struct MessageTable {
  // False for proto2, for messages with extensions or more than kOneofsMax
  // oneofs, and for well-known types: both fast paths give up on them.
  bool usable = false;
  // The descriptor's oneofs (real and synthetic), by index.
  std::vector<const OneofDescriptor*> oneofs;
  std::vector<FieldEntry> fields;  // by field index
  // The print order: DefaultValueObjectWriter's tree of the declared fields,
  // then what it appends (set Timestamps and scalar oneof members) in wire
  // order, which is field-number order.
  std::vector<const FieldEntry*> printed_in_place;
  std::vector<const FieldEntry*> printed_after;
  // Parse: json_name -> field, for fields with index < 64 (a bit each in the
  // parser's duplicate mask) whose json_name no other field shares.
  absl::flat_hash_map<std::string, const FieldEntry*> by_json_name;
};

bool IsScalar(Kind kind) {
  switch (kind) {
    case Kind::kString:
    case Kind::kBytes:
    case Kind::kBool:
    case Kind::kInt32:
    case Kind::kUint32:
    case Kind::kInt64:
    case Kind::kUint64:
    case Kind::kEnum:
      return true;
    default:
      return false;
  }
}

// Immutable tables, built on first use for a message type and everything it
// reaches, and kept for the life of the process (only generated descriptors,
// which live as long, get tables).
class TableRegistry {
 public:
  static TableRegistry& Instance() {
    static TableRegistry* const registry = new TableRegistry();
    return *registry;
  }

  const MessageTable* Find(const Descriptor* descriptor) {
    std::lock_guard<std::mutex> lock(mu_);
    return BuildLocked(descriptor);
  }

  const FieldDescriptor* timestamp_seconds() const { return seconds_; }
  const FieldDescriptor* timestamp_nanos() const { return nanos_; }

 private:
  TableRegistry()
      : seconds_(google::protobuf::Timestamp::descriptor()->FindFieldByNumber(
            google::protobuf::Timestamp::kSecondsFieldNumber)),
        nanos_(google::protobuf::Timestamp::descriptor()->FindFieldByNumber(
            google::protobuf::Timestamp::kNanosFieldNumber)) {}

  static bool IsWellKnown(const Descriptor* descriptor) {
    return descriptor->file()->package() == "google.protobuf";
  }

  const EnumTable* EnumLocked(const EnumDescriptor* descriptor)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::unique_ptr<EnumTable>& slot = enums_[descriptor];
    if (slot != nullptr) return slot.get();
    slot = std::make_unique<EnumTable>();
    for (int i = 0; i < descriptor->value_count(); ++i) {
      const google::protobuf::EnumValueDescriptor* value = descriptor->value(i);
      // Value names are identifiers: nothing in them is escaped.
      slot->quoted_name_by_number.try_emplace(
          value->number(), absl::StrCat("\"", value->name(), "\""));
      slot->number_by_name.try_emplace(value->name(), value->number());
    }
    return slot.get();
  }

  // The kind of a singular value (or of one element) of `field`.
  Kind ValueKindLocked(const FieldDescriptor* field, FieldEntry* entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    switch (field->type()) {
      case FieldDescriptor::TYPE_STRING:
        return Kind::kString;
      case FieldDescriptor::TYPE_BYTES:
        return Kind::kBytes;
      case FieldDescriptor::TYPE_BOOL:
        return Kind::kBool;
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
        return Kind::kInt32;
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        return Kind::kUint32;
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
        return Kind::kInt64;
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        return Kind::kUint64;
      case FieldDescriptor::TYPE_ENUM:
        entry->enumeration = EnumLocked(field->enum_type());
        return Kind::kEnum;
      case FieldDescriptor::TYPE_MESSAGE: {
        const Descriptor* type = field->message_type();
        if (type == google::protobuf::Timestamp::descriptor()) {
          return Kind::kTimestamp;
        }
        const MessageTable* table = BuildLocked(type);
        if (!table->usable) return Kind::kUnsupported;
        entry->message = table;
        return Kind::kMessage;
      }
      default:  // float, double, group
        return Kind::kUnsupported;
    }
  }

  void FillEntryLocked(const FieldDescriptor* field, FieldEntry* entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    entry->field = field;
    entry->oneof = field->real_containing_oneof();
    std::string name;
    if (!QuotedString(field->json_name(), &name)) return;
    entry->quoted_name = absl::StrCat(",", name, ":");
    if (field->containing_oneof() != nullptr && entry->oneof == nullptr) {
      return;  // proto3 optional: a presence protobuf renders its own way
    }
    if (field->is_map()) {
      const FieldDescriptor* key = field->message_type()->map_key();
      const FieldDescriptor* value = field->message_type()->map_value();
      FieldEntry value_entry;
      const Kind value_kind = ValueKindLocked(value, &value_entry);
      if (key->type() != FieldDescriptor::TYPE_STRING ||
          !IsScalar(value_kind)) {
        return;
      }
      entry->kind = Kind::kMap;
      entry->map_value = value;
      entry->map_value_kind = value_kind;
      entry->enumeration = value_entry.enumeration;
      return;
    }
    entry->kind = ValueKindLocked(field, entry);
  }

  const MessageTable* BuildLocked(const Descriptor* descriptor)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto [it, inserted] = messages_.try_emplace(descriptor);
    if (!inserted) return it->second.get();
    it->second = std::make_unique<MessageTable>();
    // Stable while the recursion below inserts into messages_; a recursive
    // type finds its own (not yet filled) table, which is all it needs.
    MessageTable* table = it->second.get();
    if (IsWellKnown(descriptor) ||
        descriptor->file()->syntax() != FileDescriptor::SYNTAX_PROTO3 ||
        descriptor->extension_range_count() > 0 ||
        descriptor->oneof_decl_count() > kOneofsMax) {
      return table;
    }
    table->usable = true;
    for (int i = 0; i < descriptor->oneof_decl_count(); ++i) {
      table->oneofs.push_back(descriptor->oneof_decl(i));
    }
    table->fields.resize(descriptor->field_count());
    for (int i = 0; i < descriptor->field_count(); ++i) {
      FillEntryLocked(descriptor->field(i), &table->fields[i]);
    }
    absl::flat_hash_map<std::string, int> json_name_uses;
    for (const FieldEntry& entry : table->fields) {
      const FieldDescriptor* field = entry.field;
      ++json_name_uses[field->json_name()];
      const bool appended = !field->is_repeated() &&
                            (entry.kind == Kind::kTimestamp ||
                             (entry.oneof != nullptr && IsScalar(entry.kind)));
      (appended ? table->printed_after : table->printed_in_place)
          .push_back(&entry);
    }
    std::sort(table->printed_after.begin(), table->printed_after.end(),
              [](const FieldEntry* a, const FieldEntry* b) {
                return a->field->number() < b->field->number();
              });
    for (const FieldEntry& entry : table->fields) {
      if (entry.field->index() < 64 &&
          json_name_uses[entry.field->json_name()] == 1) {
        table->by_json_name.emplace(entry.field->json_name(), &entry);
      }
    }
    return table;
  }

  // std::mutex rather than absl::Mutex: the system Abseil is not built for
  // ThreadSanitizer, which then cannot see absl::Mutex's ordering.
  std::mutex mu_;
  absl::flat_hash_map<const Descriptor*, std::unique_ptr<MessageTable>>
      messages_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const EnumDescriptor*, std::unique_ptr<EnumTable>> enums_
      ABSL_GUARDED_BY(mu_);
  const FieldDescriptor* const seconds_;
  const FieldDescriptor* const nanos_;
};

// The table of a message type, or nullptr when the fast paths do not handle
// it. A per-thread cache keeps the registry's lock off the hot path.
const MessageTable* TableFor(const Descriptor* descriptor) {
  // Descriptors of other pools can be freed; only generated ones get tables.
  if (descriptor->file()->pool() !=
      google::protobuf::DescriptorPool::generated_pool()) {
    return nullptr;
  }
  thread_local absl::flat_hash_map<const Descriptor*, const MessageTable*>
      cache;
  auto it = cache.find(descriptor);
  if (it == cache.end()) {
    it = cache.emplace(descriptor, TableRegistry::Instance().Find(descriptor))
             .first;
  }
  return it->second->usable ? it->second : nullptr;
}

// ---------------------------------------------------------------- printer

class Printer {
 public:
  explicit Printer(Sink* out) : out_(out) {}

  bool PrintMessage(const google::protobuf::Message& message,
                    const MessageTable& table, int depth) {
    if (depth > kFastDepthMax) return false;
    // Every GetReflection() is a virtual call into protobuf's descriptor
    // once-init: one per message, passed down.
    const Reflection* reflection = message.GetReflection();
    if (!reflection->GetUnknownFields(message).empty()) return false;
    out_->Put('{');
    bool first = true;
    const auto name = [&](const FieldEntry& entry) {
      out_->Put(absl::string_view(entry.quoted_name).substr(first ? 1 : 0));
      first = false;
    };
    // The set member of each oneof, asked once rather than HasField on
    // every member (Command and Event have 20).
    const FieldDescriptor* set_members[kOneofsMax];
    for (size_t i = 0; i < table.oneofs.size(); ++i) {
      set_members[i] =
          reflection->GetOneofFieldDescriptor(message, table.oneofs[i]);
    }
    for (const FieldEntry* entry : table.printed_in_place) {
      const FieldDescriptor* field = entry->field;
      if (entry->oneof != nullptr) {
        // In place, a oneof member is a message: printed when set.
        if (set_members[entry->oneof->index()] != field) continue;
        if (entry->kind != Kind::kMessage) return false;
        name(*entry);
        if (!Value(message, reflection, *entry, -1, depth)) return false;
        continue;
      }
      if (field->is_repeated() && entry->kind != Kind::kMap) {
        if (entry->kind == Kind::kUnsupported) return false;
        name(*entry);
        out_->Put('[');
        const int size = reflection->FieldSize(message, field);
        for (int i = 0; i < size; ++i) {
          if (i > 0) out_->Put(',');
          if (!Value(message, reflection, *entry, i, depth)) return false;
        }
        out_->Put(']');
        continue;
      }
      switch (entry->kind) {
        case Kind::kMap:
          name(*entry);
          if (!Map(message, reflection, *entry)) return false;
          break;
        case Kind::kMessage:
          if (!reflection->HasField(message, field)) break;
          name(*entry);
          if (!Value(message, reflection, *entry, -1, depth)) return false;
          break;
        case Kind::kUnsupported:
          // An unset message is a placeholder protobuf does not print.
          if (field->type() == FieldDescriptor::TYPE_MESSAGE &&
              !reflection->HasField(message, field)) {
            break;
          }
          return false;
        default:
          name(*entry);
          if (!Value(message, reflection, *entry, -1, depth)) return false;
      }
    }
    for (const FieldEntry* entry : table.printed_after) {
      if (entry->oneof != nullptr
              ? set_members[entry->oneof->index()] != entry->field
              : !reflection->HasField(message, entry->field)) {
        continue;
      }
      name(*entry);
      if (!Value(message, reflection, *entry, -1, depth)) return false;
    }
    out_->Put('}');
    return true;
  }

 private:
  // One value of entry's field: element `index`, or the singular value
  // (index -1).
  bool Value(const google::protobuf::Message& message,
             const Reflection* reflection, const FieldEntry& entry, int index,
             int depth) {
    const FieldDescriptor* field = entry.field;
    const bool repeated = index >= 0;
    switch (entry.kind) {
      case Kind::kMessage:
        return PrintMessage(
            repeated ? reflection->GetRepeatedMessage(message, field, index)
                     : reflection->GetMessage(message, field),
            *entry.message, depth + 1);
      case Kind::kTimestamp:
        return PrintTimestamp(
            repeated ? reflection->GetRepeatedMessage(message, field, index)
                     : reflection->GetMessage(message, field));
      default:
        return Scalar(message, reflection, field, entry.kind, entry.enumeration,
                      index);
    }
  }

  bool Scalar(const google::protobuf::Message& message,
              const Reflection* reflection, const FieldDescriptor* field,
              Kind kind, const EnumTable* enumeration, int index) {
    const bool repeated = index >= 0;
    switch (kind) {
      case Kind::kString:
      case Kind::kBytes: {
        const std::string& value =
            repeated
                ? reflection->GetRepeatedStringReference(message, field, index,
                                                         &scratch_)
                : reflection->GetStringReference(message, field, &scratch_);
        if (kind == Kind::kString) return AppendQuoted(value, out_);
        out_->Put('"');
        out_->Put(absl::Base64Escape(value));
        out_->Put('"');
        return true;
      }
      case Kind::kBool:
        out_->Put((repeated ? reflection->GetRepeatedBool(message, field, index)
                            : reflection->GetBool(message, field))
                      ? "true"
                      : "false");
        return true;
      case Kind::kInt32:
        AppendInt(repeated ? reflection->GetRepeatedInt32(message, field, index)
                           : reflection->GetInt32(message, field),
                  out_);
        return true;
      case Kind::kUint32:
        AppendInt(repeated
                      ? reflection->GetRepeatedUInt32(message, field, index)
                      : reflection->GetUInt32(message, field),
                  out_);
        return true;
      case Kind::kInt64:
        AppendQuotedInt(
            repeated ? reflection->GetRepeatedInt64(message, field, index)
                     : reflection->GetInt64(message, field),
            out_);
        return true;
      case Kind::kUint64:
        AppendQuotedInt(
            repeated ? reflection->GetRepeatedUInt64(message, field, index)
                     : reflection->GetUInt64(message, field),
            out_);
        return true;
      case Kind::kEnum: {
        const int number =
            repeated ? reflection->GetRepeatedEnumValue(message, field, index)
                     : reflection->GetEnumValue(message, field);
        auto it = enumeration->quoted_name_by_number.find(number);
        if (it != enumeration->quoted_name_by_number.end()) {
          out_->Put(it->second);
        } else {
          AppendInt(number, out_);  // an unknown value prints as its number
        }
        return true;
      }
      default:
        return false;
    }
  }

  bool PrintTimestamp(const google::protobuf::Message& timestamp) {
    const Reflection* reflection = timestamp.GetReflection();
    if (!reflection->GetUnknownFields(timestamp).empty()) return false;
    const TableRegistry& registry = TableRegistry::Instance();
    return AppendTimestamp(
        reflection->GetInt64(timestamp, registry.timestamp_seconds()),
        reflection->GetInt32(timestamp, registry.timestamp_nanos()), out_);
  }

  // A map: {} or its one entry; two or more print in the hash map's order,
  // which we cannot know, so those go to protobuf.
  bool Map(const google::protobuf::Message& message,
           const Reflection* reflection, const FieldEntry& entry) {
    const int size = reflection->FieldSize(message, entry.field);
    if (size > 1) return false;
    out_->Put('{');
    if (size == 1) {
      const google::protobuf::Message& item =
          reflection->GetRepeatedMessage(message, entry.field, 0);
      const Reflection* item_reflection = item.GetReflection();
      if (!item_reflection->GetUnknownFields(item).empty()) return false;
      const FieldDescriptor* key = item.GetDescriptor()->map_key();
      if (!AppendQuoted(
              item_reflection->GetStringReference(item, key, &scratch_),
              out_)) {
        return false;
      }
      out_->Put(':');
      if (!Scalar(item, item_reflection, entry.map_value, entry.map_value_kind,
                  entry.enumeration, -1)) {
        return false;
      }
    }
    out_->Put('}');
    return true;
  }

  Sink* const out_;
  std::string scratch_;
};

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
        const TableRegistry& registry = TableRegistry::Instance();
        timestamp_reflection->SetInt64(timestamp, registry.timestamp_seconds(),
                                       seconds);
        timestamp_reflection->SetInt32(timestamp, registry.timestamp_nanos(),
                                       nanos);
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
    p_ += word.size();
    return AtDelimiter();
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
  bool Value(const Descriptor* message, const FieldDescriptor* map,
             int depth) {
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
        duplicate_ =
            field != nullptr && key != field->json_name()
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
    return absl::InvalidArgumentError(absl::StrCat(
        "not a JSON storeledger.v1.Command: ", *duplicate,
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

namespace json_internal {

absl::StatusOr<v1::Command> ProtobufParseCommandJson(absl::string_view line) {
  v1::Command command;
  absl::Status status = ProtobufJsonToCommand(line, &command);
  if (!status.ok()) return status;
  return CheckCommand(std::move(command));
}

std::string ProtobufToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  // Cannot fail for a message of our own schema.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

bool FastJsonToMessage(absl::string_view json,
                       google::protobuf::Message* message) {
  const MessageTable* table = TableFor(message->GetDescriptor());
  if (table == nullptr) return false;
  message->Clear();
  return Parser(json).Document(*table, message);
}

bool FastMessageToJson(const google::protobuf::Message& message,
                       std::string* out) {
  const MessageTable* table = TableFor(message.GetDescriptor());
  if (table == nullptr) return false;
  Sink sink(out);
  const bool ok = Printer(&sink).PrintMessage(message, *table, 0);
  sink.Finish();
  return ok;
}

}  // namespace json_internal

absl::StatusOr<v1::Command> ParseCommandJson(absl::string_view line) {
  v1::Command command;
  if (!json_internal::FastJsonToMessage(line, &command)) {
    absl::Status status = ProtobufJsonToCommand(line, &command);
    if (!status.ok()) return status;
  }
  return CheckCommand(std::move(command));
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  if (json_internal::FastMessageToJson(message, &out)) return out;
  return json_internal::ProtobufToJson(message);
}

absl::StatusOr<absl::Time> ParseTimeFlag(absl::string_view flag,
                                         absl::string_view value) {
  absl::Time t;
  std::string error;
  // A bare date is midnight in the ledger's zone (DESIGN.md §5: +08:00).
  if (value.size() == 10 &&
      absl::ParseTime("%Y-%m-%d", std::string(value), absl::FixedTimeZone(8 * 3600),
                      &t, &error)) {
    return t;
  }
  if (!absl::ParseTime(absl::RFC3339_full, std::string(value), &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " must be an RFC 3339 time such as 2024-11-04T00:00:00+08:00, "
              "got '", value, "': ", error));
  }
  RETURN_IF_ERROR(CheckLedgerTime(absl::StrCat(flag, " ", value), t));
  return t;
}

}  // namespace storeledger
