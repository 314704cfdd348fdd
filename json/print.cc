// The JSON codec's printer: ToJson and its fast path.
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
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "json/json.h"
#include "json/json_internal.h"

namespace storeledger {
namespace json_internal {
namespace {

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

}  // namespace

// AppendQuoted into a plain string, for the tables.
bool QuotedString(absl::string_view value, std::string* out) {
  Sink sink(out);
  const bool ok = AppendQuoted(value, &sink);
  sink.Finish();
  return ok;
}

namespace {

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

// Back from days since 1970-01-01 to a date (H. Hinnant's civil_from_days).
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
    return AppendTimestamp(
        reflection->GetInt64(timestamp, TimestampSecondsField()),
        reflection->GetInt32(timestamp, TimestampNanosField()), out_);
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

}  // namespace

std::string ProtobufToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  // Cannot fail for a message of our own schema.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
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

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  if (json_internal::FastMessageToJson(message, &out)) return out;
  return json_internal::ProtobufToJson(message);
}

}  // namespace storeledger
