// The JSON codec's internals, shared by its two halves (json/parse.cc and
// json/print.cc) and the tables both walk (json/tables.cc). The codec is
// protobuf's JSON mapping, with a fast path each way that walks the message
// with reflection from per-type tables built once: an optimisation of the
// one codec, not a second format; whatever it is not certain of goes to
// protobuf. Why, and how equivalence is tested: json/tables.cc.
//
// Everything here is internal to json/; json/json.h is the codec.
#ifndef STORELEDGER_JSON_JSON_INTERNAL_H_
#define STORELEDGER_JSON_JSON_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "base/limits.h"
#include "google/protobuf/descriptor.h"

namespace storeledger::json_internal {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::OneofDescriptor;
using ::google::protobuf::Reflection;

// Nesting deeper than this goes to protobuf (whose own limits are 64 when
// printing and 100 when parsing); our schema nests at most 6 deep.
inline constexpr int kFastDepthMax = 32;

// google.protobuf.Timestamp's range (base/limits.h); protobuf refuses to
// print a time outside it.
inline constexpr int64_t kTimestampSecondsMin = kTimeSecondsMin;
inline constexpr int64_t kTimestampSecondsMax = kTimeSecondsMax;
inline constexpr int32_t kNanosPerSecond = 1'000'000'000;
inline constexpr int64_t kSecondsPerDay = 86'400;

// ---------------------------------------------------------------- UTF-8

// Decodes the multi-byte UTF-8 sequence at p (*p >= 0x80) into *cp and
// returns its length, or 0 when it is not UTF-8 that every validator accepts
// alike: overlong forms, surrogates, code points above U+10FFFF and
// noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF) all return 0, so both
// fast paths leave such strings to protobuf.
inline int DecodeUtf8(const char* p, const char* end, uint32_t* cp) {
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

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil; print.cc has civil_from_days): exact over protobuf's
// whole range.
inline int64_t DaysFromCivil(int64_t year, int month, int day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year =
      (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
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
inline constexpr int kOneofsMax = 8;

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

inline bool IsScalar(Kind kind) {
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

// The table of a message type, or nullptr when the fast paths do not handle
// it. A per-thread cache keeps the registry's lock off the hot path.
const MessageTable* TableFor(const Descriptor* descriptor);

// google.protobuf.Timestamp's seconds and nanos fields.
const FieldDescriptor* TimestampSecondsField();
const FieldDescriptor* TimestampNanosField();

// `value` as a quoted JSON string, printed as protobuf prints it (print.cc);
// false when the printer gives up on it (not UTF-8 as the parser accepts it).
bool QuotedString(absl::string_view value, std::string* out);

}  // namespace storeledger::json_internal

#endif  // STORELEDGER_JSON_JSON_INTERNAL_H_
