#pragma once
// What the delivery library's message parsers share: a strict reader of one received message's
// fields, each refusal naming the message and the field, and the writers of the common head and
// of a signed document carried inside a message. The agent also uses IsDisplayableText, to keep
// the text of its reports acceptable to these parsers.

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/encoding.hpp"
#include "core/name_table.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/protocol.hpp"
#include "trust/documents.hpp"

namespace airlock::delivery::wire {

using nlohmann::json;
using airlock::FindName;
using airlock::NameOf;

// Human text may be any UTF-8 (the parser checked that) but no control characters: it ends up in
// terminals and logs, where an escape sequence could rewrite what an operator sees.
inline bool IsDisplayableText(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// Reads the fields of one received message, each refusal naming the message and the field.
class Fields {
 public:
  Fields(const json& j, std::string_view what) : j_(j), what_(what) {}

  Error Bad(std::string_view key, std::string_view why) const {
    return Error(ErrorCode::kCorrupt,
                 "malformed " + what_ + ": \"" + std::string(key) + "\" " + std::string(why));
  }

  Status CheckObject() const {
    if (!j_.is_object()) {
      return Fail(ErrorCode::kCorrupt, "malformed " + what_ + ": want a JSON object");
    }
    return {};
  }

  const json* Find(std::string_view key) const {
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  Result<std::string> String(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr || !v->is_string()) {
      return Fail(Bad(key, "must be a string"));
    }
    return v->get<std::string>();
  }

  Result<std::string> Id(std::string_view key, bool (*valid)(std::string_view),
                         std::string_view form) const {
    AIRLOCK_ASSIGN_OR_RETURN(std::string s, String(key));
    if (!valid(s)) {
      return Fail(Bad(key, "must be " + std::string(form)));
    }
    return s;
  }

  Result<std::string> Text(std::string_view key) const {
    AIRLOCK_ASSIGN_OR_RETURN(std::string s, String(key));
    if (s.size() > kMaxTextLength) {
      return Fail(Bad(key, "is longer than " + std::to_string(kMaxTextLength) + " bytes"));
    }
    if (!IsDisplayableText(s)) {
      return Fail(Bad(key, "must not contain control characters"));
    }
    return s;
  }

  Result<std::uint64_t> Unsigned(
      std::string_view key, std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
    const json* v = Find(key);
    bool ok = v != nullptr && v->is_number_integer() &&
              (v->is_number_unsigned() || v->get<std::int64_t>() >= 0);
    if (!ok) {
      return Fail(Bad(key, "must be a non-negative integer"));
    }
    auto n = v->get<std::uint64_t>();
    if (n > max) {
      return Fail(Bad(key, "must be at most " + std::to_string(max)));
    }
    return n;
  }

  Result<TimePoint> Time(std::string_view key) const {
    AIRLOCK_ASSIGN_OR_RETURN(std::string s, String(key));
    auto t = ParseRfc3339(s);
    if (!t) {
      return Fail(Bad(key, "must be an RFC 3339 time: " + t.error().message()));
    }
    return *t;
  }

  Result<const json*> Array(std::string_view key, std::size_t min, std::size_t max) const {
    const json* v = Find(key);
    if (v == nullptr || !v->is_array()) {
      return Fail(Bad(key, "must be an array"));
    }
    if (v->size() < min || v->size() > max) {
      return Fail(Bad(key, "must hold " + std::to_string(min) + " to " + std::to_string(max) +
                               " entries, not " + std::to_string(v->size())));
    }
    return v;
  }

  // The common head of every message: its type, message id and time.
  Result<Envelope> Head(std::string_view type) const {
    AIRLOCK_RETURN_IF_ERROR(CheckObject());
    AIRLOCK_ASSIGN_OR_RETURN(std::string t, String("type"));
    if (t != type) {
      return Fail(
          Bad("type", "must be \"" + std::string(type) + "\", not \"" + t.substr(0, 64) + "\""));
    }
    Envelope e;
    AIRLOCK_ASSIGN_OR_RETURN(e.message_id, Id("message_id", ValidMessageId,
                                              "1-64 of letters, digits, '.', '_' and '-'"));
    AIRLOCK_ASSIGN_OR_RETURN(e.sent_at, Time("sent_at"));
    return e;
  }

  Result<std::string> DeliveryId() const {
    return Id("delivery_id", ValidDeliveryId, "\"dlv-\" and 8-64 lowercase hex digits");
  }

 private:
  const json& j_;
  std::string what_;
};

inline json Head(std::string_view type, const Envelope& e, std::string_view delivery_id) {
  return {{"type", type},
          {"message_id", e.message_id},
          {"sent_at", FormatRfc3339(e.sent_at)},
          {"delivery_id", delivery_id}};
}

inline json DocumentJson(const trust::SignedDocument& doc) {
  json sigs = json::array();
  for (const auto& s : doc.signatures()) {
    sigs.push_back({{"keyid", s.keyid}, {"sig", Base64Encode(s.sig)}});
  }
  return {{"signed", doc.body()}, {"signatures", sigs}};
}

// nlohmann's dump throws on invalid UTF-8 (possible only in JSON built in code); the exception
// stops here.
inline Result<std::string> Dump(const json& j) {
  try {
    return j.dump();
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kCorrupt, std::string("unserializable JSON: ") + e.what());
  }
}

}  // namespace airlock::delivery::wire
