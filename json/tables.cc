// The per-type tables both fast paths walk (json/json_internal.h): built
// once per message type from its descriptor, under a lock, and kept for the
// life of the process.
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
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "json/json_internal.h"

namespace storeledger::json_internal {
namespace {

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

}  // namespace

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

const FieldDescriptor* TimestampSecondsField() {
  return TableRegistry::Instance().timestamp_seconds();
}

const FieldDescriptor* TimestampNanosField() {
  return TableRegistry::Instance().timestamp_nanos();
}

}  // namespace storeledger::json_internal
