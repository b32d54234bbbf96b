#include "core/pkcs11.hpp"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
// Debian's libp11-kit-dev: the PKCS#11 2.40 interface with the 3.0 EdDSA constants
// (CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA). Only the types and constants are
// used; every function is reached through the module's function list.
#include <p11-kit/pkcs11.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/fs.hpp"

namespace airlock::pkcs11 {
namespace {

// ---------------------------------------------------------------------------------------------
// The URI (RFC 7512).

constexpr std::string_view kScheme = "pkcs11:";

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return c - 'A' + 10;
}

// RFC 3986 percent-decoding. The error names the attribute, never its value (it may be a PIN).
Result<std::string> PercentDecode(std::string_view text, std::string_view attribute) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size() || !IsHexDigit(text[i + 1]) || !IsHexDigit(text[i + 2])) {
      return Fail(ErrorCode::kInvalidArgument,
                  "bad percent-encoding in " + std::string(attribute) +
                      ": \"%\" must be followed by two hex digits (write a literal % as %25)");
    }
    out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
    i += 2;
  }
  return out;
}

// Encodes every byte but the unreserved characters and those in keep; with all, every byte (the
// custom for ids, which are binary).
std::string PercentEncode(std::string_view bytes, std::string_view keep, bool all = false) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    bool kept = c != 0 && keep.find(static_cast<char>(c)) != std::string_view::npos;
    if (!all && (unreserved || kept)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

// Characters RFC 7512 lets a path or query value hold unencoded (besides the unreserved ones).
constexpr std::string_view kPathKeep = ":[]@!$'()*+,=&";
constexpr std::string_view kQueryKeep = ":[]@!$'()*+,=/?|";

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    std::size_t at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) {
      break;
    }
    text.remove_prefix(at + 1);
  }
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Return values and errors.

std::string RvName(CK_RV rv) {
  static const std::pair<CK_RV, const char*> kNames[] = {
      {CKR_OK, "CKR_OK"},
      {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
      {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
      {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
      {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
      {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
      {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
      {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
      {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
      {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
      {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
      {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
      {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
      {CKR_PIN_INVALID, "CKR_PIN_INVALID"},
      {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
      {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
      {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
      {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
      {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
      {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
      {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
      {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
      {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
      {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
      {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
      {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
      {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
      {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
      {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
      {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID"},
      {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
      {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
      {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID"},
      {CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED"},
  };
  for (const auto& [value, name] : kNames) {
    if (value == rv) {
      return name;
    }
  }
  char hex[32];
  std::snprintf(hex, sizeof(hex), "CKR 0x%lx", static_cast<unsigned long>(rv));
  return hex;
}

// A failed call into the module, for the return values that need no advice of their own.
Error RvError(std::string_view function, CK_RV rv) {
  std::string message = std::string(function) + " failed: " + RvName(rv);
  if (rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SESSION_CLOSED ||
      rv == CKR_SESSION_HANDLE_INVALID) {
    message += " (was the token removed? reconnect it and try again)";
  }
  return Error(ErrorCode::kIo, std::move(message));
}

// Fixed-width, blank-padded CK_TOKEN_INFO fields as text.
std::string Field(const unsigned char* data, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) {
    s.pop_back();
  }
  return s;
}

// A PIN that is wiped from memory when it goes.
struct Pin {
  std::string value;
  Pin() = default;
  explicit Pin(std::string v) : value(std::move(v)) {}
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  ~Pin() { OPENSSL_cleanse(value.data(), value.size()); }
};

// ---------------------------------------------------------------------------------------------
// Modules.

// A loaded and initialised module. Handed out as shared_ptr<const Module> by ModuleTable.
struct Module {
  void* handle = nullptr;
  CK_FUNCTION_LIST_PTR fn = nullptr;
  std::string path;
};

// The modules this process has loaded. PKCS#11 lets a module be initialised once per process
// (C_Initialize then answers CKR_CRYPTOKI_ALREADY_INITIALIZED, and one C_Finalize ends it for
// every user), so every key in a module must share one initialisation: the table counts the users
// of each module under its mutex and finalises and unloads a module when its last user goes.
class ModuleTable {
 public:
  Result<std::shared_ptr<const Module>> Acquire(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    ::dlerror();
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = ::dlerror();
      std::error_code ec;
      if (path.find('/') != std::string::npos && !std::filesystem::exists(path, ec)) {
        return Fail(ErrorCode::kNotFound,
                    "PKCS#11 module " + path +
                        " not found: install the token's module (SoftHSM: apt-get install "
                        "softhsm2, then /usr/lib/softhsm/libsofthsm2.so) or correct module-path "
                        "or AIRLOCK_PKCS11_MODULE");
      }
      return Fail(ErrorCode::kInvalidArgument, "cannot load PKCS#11 module " + path + ": " +
                                                   (why != nullptr ? why : "dlopen failed"));
    }
    if (auto it = entries_.find(handle); it != entries_.end()) {
      ::dlclose(handle);  // the entry holds the library open already
      ++it->second.users;
      return Share(handle, it->second.fn, path);
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
    CK_FUNCTION_LIST_PTR fn = nullptr;
    if (get_list == nullptr) {
      ::dlclose(handle);
      return Fail(ErrorCode::kInvalidArgument,
                  path + " is not a PKCS#11 module (it has no C_GetFunctionList)");
    }
    if (CK_RV rv = get_list(&fn); rv != CKR_OK || fn == nullptr) {
      ::dlclose(handle);
      return Fail(RvError("C_GetFunctionList of " + path, rv));
    }
    // Keys are shared between threads: the module is to lock with the operating system's mutexes.
    CK_C_INITIALIZE_ARGS args{.CreateMutex = nullptr,
                              .DestroyMutex = nullptr,
                              .LockMutex = nullptr,
                              .UnlockMutex = nullptr,
                              .flags = CKF_OS_LOCKING_OK,
                              .pReserved = nullptr};
    CK_RV rv = fn->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      ::dlclose(handle);
      Error e = RvError("C_Initialize of " + path, rv);
      return Fail(ErrorCode::kIo, e.message() +
                                      " (the module could not start: check its own "
                                      "configuration, for SoftHSM SOFTHSM2_CONF and its tokendir)");
    }
    // Already initialised by someone else in this process (another library): theirs to finalise.
    entries_[handle] = Entry{.fn = fn, .finalize = rv == CKR_OK, .users = 1};
    return Share(handle, fn, path);
  }

 private:
  struct Entry {
    CK_FUNCTION_LIST_PTR fn;
    bool finalize;  // whether this table initialised the module, and so finalises it
    int users;      // live shared_ptrs handed out
  };

  std::shared_ptr<const Module> Share(void* handle, CK_FUNCTION_LIST_PTR fn,
                                      const std::string& path) {
    return std::shared_ptr<const Module>(new Module{.handle = handle, .fn = fn, .path = path},
                                         [this](const Module* m) {
                                           Release(m->handle);
                                           delete m;
                                         });
  }

  void Release(void* handle) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(handle);
    if (it == entries_.end() || --it->second.users > 0) {
      return;
    }
    if (it->second.finalize) {
      it->second.fn->C_Finalize(nullptr);
    }
    entries_.erase(it);
    ::dlclose(handle);
  }

  std::mutex mu_;
  std::map<void*, Entry> entries_;
};

ModuleTable& Modules() {
  // Never destroyed: a key in a static may outlive any destruction order we could pick.
  static auto* table = new ModuleTable;
  return *table;
}

// ---------------------------------------------------------------------------------------------
// Sessions, objects and attributes.

// An open session with one token. Closes on destruction (the token logs the user out when the
// application's last session with it closes).
class Session {
 public:
  Session(std::shared_ptr<const Module> module, CK_SESSION_HANDLE handle)
      : module_(std::move(module)), handle_(handle) {}
  ~Session() { module_->fn->C_CloseSession(handle_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  CK_FUNCTION_LIST_PTR fn() const { return module_->fn; }
  CK_SESSION_HANDLE handle() const { return handle_; }

 private:
  std::shared_ptr<const Module> module_;
  CK_SESSION_HANDLE handle_;
};

// The token a URI names, once found.
struct Token {
  CK_SLOT_ID slot = 0;
  std::string label;
  CK_FLAGS flags = 0;
};

Result<Token> FindToken(const Module& module, const KeyUri& uri) {
  CK_ULONG count = 0;
  if (CK_RV rv = module.fn->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return Fail(RvError("C_GetSlotList", rv));
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) {
    if (CK_RV rv = module.fn->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
      return Fail(RvError("C_GetSlotList", rv));
    }
    slots.resize(count);
  }
  std::vector<Token> matches;
  std::string seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    std::memset(&info, 0, sizeof(info));
    if (module.fn->C_GetTokenInfo(slot, &info) != CKR_OK ||
        (info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      continue;  // gone since the list was made, or a blank slot (SoftHSM keeps one free)
    }
    Token t{.slot = slot, .label = Field(info.label, sizeof(info.label)), .flags = info.flags};
    seen += (seen.empty() ? "\"" : ", \"") + t.label + "\"";
    if ((uri.token.empty() || uri.token == t.label) &&
        (uri.manufacturer.empty() ||
         uri.manufacturer == Field(info.manufacturerID, sizeof(info.manufacturerID))) &&
        (uri.model.empty() || uri.model == Field(info.model, sizeof(info.model))) &&
        (uri.serial.empty() || uri.serial == Field(info.serialNumber, sizeof(info.serialNumber)))) {
      matches.push_back(std::move(t));
    }
  }
  std::string there = seen.empty() ? "it has no initialised token" : "its tokens: " + seen;
  if (matches.empty()) {
    std::string which = uri.token.empty() ? "no token matches" : "no token \"" + uri.token + "\"";
    return Fail(ErrorCode::kNotFound,
                which + " in " + module.path + " (" + there +
                    "); correct token= in the URI, or initialise the token (SoftHSM: "
                    "softhsm2-util --init-token --free --label NAME)");
  }
  if (matches.size() > 1) {
    return Fail(ErrorCode::kInvalidArgument, std::to_string(matches.size()) + " tokens match in " +
                                                 module.path + " (" + there +
                                                 "); name one with token=LABEL");
  }
  return matches.front();
}

Error Unsupported(const std::string& token_label, std::string_view name, std::string_view what) {
  return Error(ErrorCode::kUnsupported,
               "token \"" + token_label + "\" does not support " + std::string(name) + " (" +
                   std::string(what) +
                   "); Airlock needs a token with PKCS#11 3.0 EdDSA (SoftHSM 2.6 or later has it)");
}

// Asks the token first; a token may still refuse the mechanism when it is used (SoftHSM's
// slots.mechanisms filter does so), which TokenSigner::Sign reports the same way.
Status CheckMechanism(const Module& module, const Token& token, CK_MECHANISM_TYPE mechanism,
                      CK_FLAGS needed, std::string_view name, std::string_view what) {
  CK_MECHANISM_INFO info;
  std::memset(&info, 0, sizeof(info));
  CK_RV rv = module.fn->C_GetMechanismInfo(token.slot, mechanism, &info);
  if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && (info.flags & needed) == 0)) {
    return Fail(Unsupported(token.label, name, what));
  }
  if (rv != CKR_OK) {
    return Fail(RvError("C_GetMechanismInfo", rv));
  }
  return {};
}

Result<std::shared_ptr<const Session>> OpenSession(std::shared_ptr<const Module> module,
                                                   const Token& token, bool read_write) {
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
  CK_RV rv = module->fn->C_OpenSession(token.slot, flags, nullptr, nullptr, &handle);
  if (rv == CKR_TOKEN_WRITE_PROTECTED) {
    return Fail(ErrorCode::kUnsupported,
                "token \"" + token.label + "\" is write-protected: cannot make a key in it");
  }
  if (rv != CKR_OK) {
    return Fail(RvError("C_OpenSession", rv));
  }
  return std::make_shared<const Session>(std::move(module), handle);
}

// The PIN the URI or the environment gives; nullopt when neither does.
Result<std::optional<std::string>> ResolvePin(const KeyUri& uri, const Environment& env) {
  if (uri.pin_value) {
    return uri.pin_value;
  }
  if (!uri.pin_source.empty()) {
    std::string_view src = uri.pin_source;
    if (src.starts_with("file://")) {
      src.remove_prefix(7);  // file:///path: an empty host
    } else if (src.starts_with("file:")) {
      src.remove_prefix(5);
    }
    if (!src.starts_with("/")) {
      return Fail(ErrorCode::kInvalidArgument,
                  "pin-source must be a file: URI or an absolute path (pin-source=file:/path)");
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(std::string(src), 4096));
    Pin content(std::move(text));
    std::string_view line = content.value;
    line = line.substr(0, line.find('\n'));
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the PIN file " + std::string(src) + " is empty (its first line is the PIN)");
    }
    return std::optional<std::string>(std::string(line));
  }
  return env.pin;
}

Status Login(const Session& session, const Token& token, const std::optional<std::string>& pin) {
  CK_RV rv;
  if (pin) {
    // C_Login does not write through the pointer; PKCS#11 declares it non-const.
    rv = session.fn()->C_Login(session.handle(), CKU_USER,
                               reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin->data())),
                               pin->size());
  } else if ((token.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0) {
    rv = session.fn()->C_Login(session.handle(), CKU_USER, nullptr, 0);  // a PIN pad
  } else if ((token.flags & CKF_LOGIN_REQUIRED) != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "token \"" + token.label +
                    "\" needs its user PIN: add pin-source=file:/path/to/pin to the URI's query, "
                    "or set AIRLOCK_PKCS11_PIN");
  } else {
    return {};
  }
  switch (rv) {
    case CKR_OK:
    case CKR_USER_ALREADY_LOGGED_IN:  // another key's session with this token logged in
      return {};
    case CKR_PIN_INCORRECT:
      return Fail(ErrorCode::kInvalidArgument,
                  "wrong PIN for token \"" + token.label +
                      "\" (CKR_PIN_INCORRECT): check pin-value, pin-source or AIRLOCK_PKCS11_PIN; "
                      "tokens lock the PIN after a few wrong tries");
    case CKR_PIN_LOCKED:
      return Fail(ErrorCode::kInvalidArgument,
                  "the user PIN of token \"" + token.label +
                      "\" is locked (CKR_PIN_LOCKED): the token's security officer must unlock it");
    case CKR_PIN_EXPIRED:
      return Fail(ErrorCode::kInvalidArgument,
                  "the user PIN of token \"" + token.label +
                      "\" has expired (CKR_PIN_EXPIRED): set a new one with the token's tools");
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_INVALID:
      return Fail(ErrorCode::kInvalidArgument, "the PIN for token \"" + token.label +
                                                   "\" is not one it could accept (" + RvName(rv) +
                                                   "): check the PIN you gave");
    case CKR_USER_PIN_NOT_INITIALIZED:
      return Fail(ErrorCode::kInvalidArgument,
                  "token \"" + token.label +
                      "\" has no user PIN yet (CKR_USER_PIN_NOT_INITIALIZED): initialise it first");
    default:
      return Fail(RvError("C_Login", rv));
  }
}

// Up to two objects matching the template: enough to tell none, one and several apart.
Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(const Session& session,
                                                  std::vector<CK_ATTRIBUTE> templ) {
  CK_RV rv = session.fn()->C_FindObjectsInit(session.handle(), templ.data(), templ.size());
  if (rv != CKR_OK) {
    return Fail(RvError("C_FindObjectsInit", rv));
  }
  std::vector<CK_OBJECT_HANDLE> found(2);
  CK_ULONG count = 0;
  rv = session.fn()->C_FindObjects(session.handle(), found.data(), found.size(), &count);
  session.fn()->C_FindObjectsFinal(session.handle());
  if (rv != CKR_OK) {
    return Fail(RvError("C_FindObjects", rv));
  }
  found.resize(count);
  return found;
}

// An attribute's bytes; nullopt when the object has no such attribute or keeps it secret.
Result<std::optional<std::string>> Attribute(const Session& session, CK_OBJECT_HANDLE object,
                                             CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a{.type = type, .pValue = nullptr, .ulValueLen = 0};
  CK_RV rv = session.fn()->C_GetAttributeValue(session.handle(), object, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
      a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::optional<std::string>();
  }
  if (rv != CKR_OK) {
    return Fail(RvError("C_GetAttributeValue", rv));
  }
  std::string value(a.ulValueLen, '\0');
  a.pValue = value.data();
  rv = session.fn()->C_GetAttributeValue(session.handle(), object, &a, 1);
  if (rv != CKR_OK) {
    return Fail(RvError("C_GetAttributeValue", rv));
  }
  value.resize(a.ulValueLen);
  return std::optional<std::string>(std::move(value));
}

Result<CK_ULONG> UlongAttribute(const Session& session, CK_OBJECT_HANDLE object,
                                CK_ATTRIBUTE_TYPE type, std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto bytes, Attribute(session, object, type));
  CK_ULONG value = 0;
  if (!bytes || bytes->size() != sizeof(value)) {
    return Fail(ErrorCode::kIo, "the token gave no usable " + std::string(name));
  }
  std::memcpy(&value, bytes->data(), sizeof(value));
  return value;
}

// DER encodings of the edwards25519 curve in CKA_EC_PARAMS (PKCS#11 3.0 §2.3.10): the OID
// id-Ed25519 (1.3.101.112, RFC 8410) or the PrintableString "edwards25519".
const std::string kEd25519Oid("\x06\x03\x2b\x65\x70", 5);
const std::string kEd25519Name(
    "\x13\x0c"
    "edwards25519",
    14);

std::string KeyTypeName(CK_KEY_TYPE type) {
  switch (type) {
    case CKK_RSA:
      return "an RSA key";
    case CKK_EC:
      return "an ECDSA key";
    case CKK_DSA:
      return "a DSA key";
    default: {
      char hex[48];
      std::snprintf(hex, sizeof(hex), "a key of type 0x%lx", static_cast<unsigned long>(type));
      return hex;
    }
  }
}

// Refuses a key that is not an Ed25519 key.
Status CheckEd25519(const Session& session, CK_OBJECT_HANDLE key, std::string_view which) {
  AIRLOCK_ASSIGN_OR_RETURN(CK_ULONG type, UlongAttribute(session, key, CKA_KEY_TYPE, "key type"));
  const std::string advice =
      "; Airlock signs only with Ed25519 keys: make one with airlock keygen NAME --pkcs11 URI";
  if (type != CKK_EC_EDWARDS) {
    return Fail(ErrorCode::kUnsupported, std::string(which) + " is " + KeyTypeName(type) +
                                             ", not Ed25519 (CKK_EC_EDWARDS)" + advice);
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto params, Attribute(session, key, CKA_EC_PARAMS));
  if (params && *params != kEd25519Oid && *params != kEd25519Name) {
    return Fail(ErrorCode::kUnsupported,
                std::string(which) +
                    " is an Edwards-curve key on another curve than edwards25519 "
                    "(Ed448?)" +
                    advice);
  }
  return {};
}

// The 32-byte public key in CKA_EC_POINT: a DER OCTET STRING around it (PKCS#11 3.0), or the raw
// bytes (some modules).
Result<PublicKey> ReadPublicKey(const Session& session, CK_OBJECT_HANDLE pub) {
  AIRLOCK_ASSIGN_OR_RETURN(auto point, Attribute(session, pub, CKA_EC_POINT));
  if (!point) {
    return Fail(ErrorCode::kUnsupported, "the public key object has no CKA_EC_POINT");
  }
  if (point->size() == 34 && (*point)[0] == '\x04' && (*point)[1] == '\x20') {
    return PublicKey::FromRaw(std::string_view(*point).substr(2));
  }
  if (point->size() == 32) {
    return PublicKey::FromRaw(*point);
  }
  return Fail(ErrorCode::kUnsupported,
              "the public key's CKA_EC_POINT is " + std::to_string(point->size()) +
                  " bytes, neither an Ed25519 key (32) nor a DER OCTET STRING around one (34)");
}

// Buffers for a search template: each CK_ATTRIBUTE points into this object, so it must outlive
// the search.
struct Search {
  CK_OBJECT_CLASS object_class = 0;
  std::string label;
  std::optional<std::string> id;

  std::vector<CK_ATTRIBUTE> Template() {
    std::vector<CK_ATTRIBUTE> t;
    t.push_back({.type = CKA_CLASS, .pValue = &object_class, .ulValueLen = sizeof(object_class)});
    if (!label.empty()) {
      t.push_back({.type = CKA_LABEL, .pValue = label.data(), .ulValueLen = label.size()});
    }
    if (id) {
      t.push_back({.type = CKA_ID, .pValue = id->data(), .ulValueLen = id->size()});
    }
    return t;
  }
};

std::string Describe(const KeyUri& uri) {
  std::string s;
  if (!uri.object.empty()) {
    s = "labelled \"" + uri.object + "\"";
  }
  if (uri.id) {
    s += (s.empty() ? "with id " : " and id ") + PercentEncode(*uri.id, "", true);
  }
  return s;
}

Result<CK_OBJECT_HANDLE> FindKey(const Session& session, const Token& token, const KeyUri& uri,
                                 CK_OBJECT_CLASS object_class, bool logged_in) {
  Search search{.object_class = object_class, .label = uri.object, .id = uri.id};
  AIRLOCK_ASSIGN_OR_RETURN(auto found, FindObjects(session, search.Template()));
  const char* kind = object_class == CKO_PRIVATE_KEY ? "private" : "public";
  if (found.empty()) {
    std::string hint = logged_in || object_class == CKO_PRIVATE_KEY
                           ? ""
                           : " (some tokens show keys only after login: give the PIN)";
    return Fail(ErrorCode::kNotFound,
                "no " + std::string(kind) + " key " + Describe(uri) + " in token \"" + token.label +
                    "\"" + hint +
                    "; correct object= or id= in the URI, or make the key with airlock keygen "
                    "NAME --pkcs11 URI");
  }
  if (found.size() > 1) {
    return Fail(ErrorCode::kInvalidArgument, "several " + std::string(kind) + " keys " +
                                                 Describe(uri) + " in token \"" + token.label +
                                                 "\"; name one with both object= and id=");
  }
  return found.front();
}

// The public key object of a private key: the one with its CKA_ID, or with its label when it has
// no CKA_ID.
Result<CK_OBJECT_HANDLE> FindPublicHalf(const Session& session, CK_OBJECT_HANDLE priv) {
  Search search{.object_class = CKO_PUBLIC_KEY, .label = "", .id = std::nullopt};
  AIRLOCK_ASSIGN_OR_RETURN(auto id, Attribute(session, priv, CKA_ID));
  if (id && !id->empty()) {
    search.id = std::move(id);
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(auto label, Attribute(session, priv, CKA_LABEL));
    search.label = label.value_or("");
    if (search.label.empty()) {
      return Fail(ErrorCode::kNotFound,
                  "the private key has neither CKA_ID nor CKA_LABEL to find its public key by");
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto found, FindObjects(session, search.Template()));
  if (found.empty()) {
    return Fail(ErrorCode::kNotFound,
                "the token holds no public key object beside the private key (same " +
                    std::string(search.id ? "CKA_ID" : "CKA_LABEL") +
                    "); Airlock reads the public key from it (CKA_EC_POINT)");
  }
  if (found.size() > 1) {
    return Fail(ErrorCode::kInvalidArgument, "several public key objects share the private key's " +
                                                 std::string(search.id ? "CKA_ID" : "CKA_LABEL") +
                                                 "; give them distinct ids");
  }
  return found.front();
}

// ---------------------------------------------------------------------------------------------
// Signing.

class TokenSigner final : public ExternalSigner {
 public:
  TokenSigner(std::shared_ptr<const Session> session, CK_OBJECT_HANDLE key, std::string token_label,
              std::string where)
      : session_(std::move(session)),
        key_(key),
        token_label_(std::move(token_label)),
        where_(std::move(where)) {}

  Result<std::string> Sign(std::string_view message) const override {
    // A PKCS#11 session runs one operation at a time.
    std::lock_guard<std::mutex> lock(mu_);
    CK_MECHANISM mechanism{.mechanism = CKM_EDDSA, .pParameter = nullptr, .ulParameterLen = 0};
    CK_RV rv;
    {
#if defined(__SANITIZE_ADDRESS__)
      // SoftHSM 2.6.1 (the tests' token) leaks a small ASN.1 string in every EdDSA C_SignInit.
      // What a module allocates inside its own call is not Airlock's to free, and LeakSanitizer
      // cannot tell it apart by a suppression: its stacks stop in libcrypto, which has no frame
      // pointers. Only this call is exempt.
      __lsan::ScopedDisabler module_allocations_are_the_modules;
#endif
      rv = session_->fn()->C_SignInit(session_->handle(), &mechanism, key_);
    }
    if (rv == CKR_MECHANISM_INVALID) {
      return Fail(Unsupported(token_label_, "CKM_EDDSA", "Ed25519 signing"));
    }
    if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED) {
      return Fail(ErrorCode::kUnsupported,
                  "the token does not let key " + where_ + " sign (its CKA_SIGN is false)");
    }
    if (rv != CKR_OK) {
      return Fail(RvError("C_SignInit", rv).WithContext("signing with " + where_));
    }
    std::string signature(64, '\0');
    CK_ULONG length = signature.size();
    rv = session_->fn()->C_Sign(
        session_->handle(), reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(message.data())),
        message.size(), reinterpret_cast<CK_BYTE_PTR>(signature.data()), &length);
    if (rv != CKR_OK) {
      return Fail(RvError("C_Sign", rv).WithContext("signing with " + where_));
    }
    if (length != 64) {
      return Fail(ErrorCode::kIo, "the token gave a " + std::to_string(length) +
                                      "-byte signature, not a 64-byte Ed25519 one, for " + where_);
    }
    return signature;
  }

  std::string Where() const override { return where_; }

 private:
  std::shared_ptr<const Session> session_;
  CK_OBJECT_HANDLE key_;
  std::string token_label_;
  std::string where_;
  mutable std::mutex mu_;
};

// Makes the signer and checks, with one signature, that the public key belongs to the private
// key: a mismatched pair would otherwise sign documents that no one can verify.
Result<PrivateKey> MakeKey(std::shared_ptr<const Session> session, CK_OBJECT_HANDLE priv,
                           PublicKey pub, const Token& token, std::string where) {
  auto signer =
      std::make_shared<TokenSigner>(std::move(session), priv, token.label, std::move(where));
  const std::string probe = "airlock: does this token key match its public key?";
  AIRLOCK_ASSIGN_OR_RETURN(std::string signature, signer->Sign(probe));
  if (!pub.Verify(probe, signature)) {
    return Fail(ErrorCode::kVerification,
                "the token's public key object does not belong to its private key (a signature "
                "by the private key does not verify with it)");
  }
  return PrivateKey::FromSigner(std::move(signer), std::move(pub));
}

// What every operation starts with: the URI parsed, the module loaded, the token found.
struct Opened {
  KeyUri uri;
  std::shared_ptr<const Module> module;
  Token token;
};

Result<KeyUri> Parse(std::string_view text) { return WithContext(ParseUri(text), "PKCS#11 URI"); }

Result<Opened> OpenToken(KeyUri uri, const Environment& env) {
  std::string path = uri.module_path;
  if (path.empty()) {
    path = env.module.value_or("");
  }
  if (path.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "no PKCS#11 module: add module-path=/path/to/module.so to the URI's query, or set "
                "AIRLOCK_PKCS11_MODULE (SoftHSM: /usr/lib/softhsm/libsofthsm2.so)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto module, Modules().Acquire(path));
  AIRLOCK_ASSIGN_OR_RETURN(Token token, FindToken(*module, uri));
  return Opened{.uri = std::move(uri), .module = std::move(module), .token = std::move(token)};
}

// Resolves the PIN (the URI's, else the environment's), logs in with it, and wipes every copy of
// it, the URI's included. Without a PIN, pin_optional skips the login; otherwise Login decides (a
// PIN pad, a token that needs no login, or an error asking for the PIN). True when a PIN was used.
Result<bool> LogIn(const Session& session, Opened& t, const Environment& env, bool pin_optional) {
  auto resolved = ResolvePin(t.uri, env);
  if (t.uri.pin_value) {
    OPENSSL_cleanse(t.uri.pin_value->data(), t.uri.pin_value->size());
    t.uri.pin_value.reset();
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::optional<std::string> pin, std::move(resolved));
  struct Wipe {
    std::optional<std::string>& pin;
    ~Wipe() {
      if (pin) {
        OPENSSL_cleanse(pin->data(), pin->size());
      }
    }
  } wipe{pin};
  if (!pin && pin_optional) {
    return false;
  }
  AIRLOCK_RETURN_IF_ERROR(Login(session, t.token, pin));
  return pin.has_value();
}

}  // namespace

bool IsUri(std::string_view spec) {
  if (spec.size() < kScheme.size()) {
    return false;
  }
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    char c = spec[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != kScheme[i]) {
      return false;
    }
  }
  return true;
}

Result<KeyUri> ParseUri(std::string_view text) {
  if (!IsUri(text)) {
    return Fail(ErrorCode::kInvalidArgument, "not a PKCS#11 URI: it must start with \"pkcs11:\"");
  }
  text.remove_prefix(kScheme.size());
  std::string_view path = text.substr(0, text.find('?'));
  std::string_view query =
      path.size() < text.size() ? text.substr(path.size() + 1) : std::string_view();
  KeyUri uri;
  std::map<std::string, bool> seen;
  auto take = [&](std::string_view part, bool in_query) -> Status {
    if (part.empty()) {
      return {};
    }
    const char* where = in_query ? "query" : "path";
    std::size_t eq = part.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("a ") + where + " attribute is not name=value");
    }
    std::string name(part.substr(0, eq));
    if (name.size() > 40) {
      name = name.substr(0, 40) + "…";
    }
    if (seen[name]) {
      return Fail(ErrorCode::kInvalidArgument, "attribute " + name + " is given twice");
    }
    seen[name] = true;
    AIRLOCK_ASSIGN_OR_RETURN(std::string value, PercentDecode(part.substr(eq + 1), name));
    if (!in_query) {
      if (name == "token") {
        uri.token = std::move(value);
      } else if (name == "manufacturer") {
        uri.manufacturer = std::move(value);
      } else if (name == "model") {
        uri.model = std::move(value);
      } else if (name == "serial") {
        uri.serial = std::move(value);
      } else if (name == "object") {
        uri.object = std::move(value);
      } else if (name == "id") {
        uri.id = std::move(value);
      } else if (name == "type") {
        if (value != "private" && value != "public") {
          return Fail(
              ErrorCode::kInvalidArgument,
              "type=" + value + ": Airlock uses key pairs; write type=private or leave type out");
        }
        uri.type = std::move(value);
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    "unsupported path attribute " + name +
                        " (Airlock reads token, manufacturer, model, serial, object, id, type)");
      }
      return {};
    }
    if (name == "module-path") {
      uri.module_path = std::move(value);
    } else if (name == "pin-value") {
      uri.pin_value = std::move(value);
    } else if (name == "pin-source") {
      uri.pin_source = std::move(value);
    } else if (name == "module-name") {
      return Fail(ErrorCode::kInvalidArgument,
                  "module-name is not supported: give the module's file with module-path=");
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  "unsupported query attribute " + name +
                      " (Airlock reads module-path, pin-value, pin-source)");
    }
    return {};
  };
  for (std::string_view part : Split(path, ';')) {
    AIRLOCK_RETURN_IF_ERROR(take(part, false));
  }
  if (!query.empty()) {
    for (std::string_view part : Split(query, '&')) {
      AIRLOCK_RETURN_IF_ERROR(take(part, true));
    }
  }
  if (uri.pin_value && !uri.pin_source.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "give pin-value or pin-source, not both");
  }
  if (uri.object.empty() && !uri.id) {
    return Fail(ErrorCode::kInvalidArgument,
                "the URI names no key: add object=LABEL (the key's label in the token) or id=");
  }
  return uri;
}

std::string KeyUri::ToString() const {
  std::string out(kScheme);
  std::string sep;
  auto path_attr = [&](const char* name, const std::string& value) {
    if (!value.empty()) {
      out += sep + name + "=" + PercentEncode(value, kPathKeep);
      sep = ";";
    }
  };
  path_attr("token", token);
  path_attr("manufacturer", manufacturer);
  path_attr("model", model);
  path_attr("serial", serial);
  path_attr("object", object);
  if (id) {
    out += sep + "id=" + PercentEncode(*id, "", true);
    sep = ";";
  }
  path_attr("type", type);
  sep = "?";
  for (const auto& [name, value] :
       {std::pair{"module-path", &module_path}, std::pair{"pin-source", &pin_source}}) {
    if (!value->empty()) {
      out += sep + name + "=" + PercentEncode(*value, kQueryKeep);
      sep = "&";
    }
  }
  return out;
}

Environment Environment::FromProcess() {
  auto get = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
      return std::nullopt;
    }
    return std::string(v);
  };
  return Environment{.module = get("AIRLOCK_PKCS11_MODULE"), .pin = get("AIRLOCK_PKCS11_PIN")};
}

Result<PrivateKey> OpenKey(std::string_view text, const Environment& env) {
  AIRLOCK_ASSIGN_OR_RETURN(KeyUri uri, Parse(text));
  std::string where = uri.ToString();
  auto open = [&]() -> Result<PrivateKey> {
    AIRLOCK_ASSIGN_OR_RETURN(Opened t, OpenToken(std::move(uri), env));
    AIRLOCK_RETURN_IF_ERROR(
        CheckMechanism(*t.module, t.token, CKM_EDDSA, CKF_SIGN, "CKM_EDDSA", "Ed25519 signing"));
    AIRLOCK_ASSIGN_OR_RETURN(auto session, OpenSession(t.module, t.token, false));
    AIRLOCK_RETURN_IF_ERROR(LogIn(*session, t, env, false));
    AIRLOCK_ASSIGN_OR_RETURN(auto priv, FindKey(*session, t.token, t.uri, CKO_PRIVATE_KEY, true));
    AIRLOCK_RETURN_IF_ERROR(CheckEd25519(*session, priv, "the private key"));
    AIRLOCK_ASSIGN_OR_RETURN(auto pub_object, FindPublicHalf(*session, priv));
    AIRLOCK_ASSIGN_OR_RETURN(PublicKey pub, ReadPublicKey(*session, pub_object));
    return MakeKey(std::move(session), priv, std::move(pub), t.token, where);
  };
  return WithContext(open(), "PKCS#11 key " + where);
}

Result<PublicKey> OpenPublicKey(std::string_view text, const Environment& env) {
  AIRLOCK_ASSIGN_OR_RETURN(KeyUri uri, Parse(text));
  std::string where = uri.ToString();
  auto open = [&]() -> Result<PublicKey> {
    AIRLOCK_ASSIGN_OR_RETURN(Opened t, OpenToken(std::move(uri), env));
    AIRLOCK_ASSIGN_OR_RETURN(auto session, OpenSession(t.module, t.token, false));
    AIRLOCK_ASSIGN_OR_RETURN(bool logged_in, LogIn(*session, t, env, true));
    AIRLOCK_ASSIGN_OR_RETURN(auto pub,
                             FindKey(*session, t.token, t.uri, CKO_PUBLIC_KEY, logged_in));
    AIRLOCK_RETURN_IF_ERROR(CheckEd25519(*session, pub, "the public key"));
    return ReadPublicKey(*session, pub);
  };
  return WithContext(open(), "PKCS#11 key " + where);
}

Result<PrivateKey> GenerateKey(std::string_view text, const Environment& env,
                               std::string* made_uri) {
  AIRLOCK_ASSIGN_OR_RETURN(KeyUri uri, Parse(text));
  if (uri.object.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "the URI must give the new key's label: pkcs11:token=TOKEN;object=LABEL");
  }
  std::string where = uri.ToString();
  auto make = [&]() -> Result<PrivateKey> {
    AIRLOCK_ASSIGN_OR_RETURN(Opened t, OpenToken(std::move(uri), env));
    AIRLOCK_RETURN_IF_ERROR(CheckMechanism(*t.module, t.token, CKM_EC_EDWARDS_KEY_PAIR_GEN,
                                           CKF_GENERATE_KEY_PAIR, "CKM_EC_EDWARDS_KEY_PAIR_GEN",
                                           "Ed25519 key generation"));
    AIRLOCK_RETURN_IF_ERROR(
        CheckMechanism(*t.module, t.token, CKM_EDDSA, CKF_SIGN, "CKM_EDDSA", "Ed25519 signing"));
    AIRLOCK_ASSIGN_OR_RETURN(auto session, OpenSession(t.module, t.token, true));
    AIRLOCK_RETURN_IF_ERROR(LogIn(*session, t, env, false));
    // Never two keys under one name: a URI must keep naming the key it named.
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      Search by_label{.object_class = cls, .label = t.uri.object, .id = std::nullopt};
      AIRLOCK_ASSIGN_OR_RETURN(auto found, FindObjects(*session, by_label.Template()));
      if (!found.empty()) {
        return Fail(ErrorCode::kAlreadyExists,
                    "token \"" + t.token.label + "\" already holds a key labelled \"" +
                        t.uri.object + "\"; choose another object= label");
      }
    }
    if (!t.uri.id) {
      std::string id(8, '\0');
      if (RAND_bytes(reinterpret_cast<unsigned char*>(id.data()), 8) != 1) {
        return Fail(ErrorCode::kInternal, "the system's random source failed");
      }
      t.uri.id = std::move(id);
    }
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      Search by_id{.object_class = cls, .label = "", .id = t.uri.id};
      AIRLOCK_ASSIGN_OR_RETURN(auto found, FindObjects(*session, by_id.Template()));
      if (!found.empty()) {
        return Fail(ErrorCode::kAlreadyExists, "token \"" + t.token.label +
                                                   "\" already holds a key with id " +
                                                   PercentEncode(*t.uri.id, "", true) +
                                                   "; choose another id= or leave it out");
      }
    }
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    std::string label = t.uri.object;
    std::string id = *t.uri.id;
    CK_MECHANISM mechanism{
        .mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN, .pParameter = nullptr, .ulParameterLen = 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    // The OID form first (RFC 8410); tokens that want the curve's name get it on the second try.
    for (const std::string& curve : {kEd25519Oid, kEd25519Name}) {
      std::string params = curve;
      CK_ATTRIBUTE pub_template[] = {
          {.type = CKA_TOKEN, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_PRIVATE, .pValue = &no, .ulValueLen = sizeof(no)},
          {.type = CKA_VERIFY, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_LABEL, .pValue = label.data(), .ulValueLen = label.size()},
          {.type = CKA_ID, .pValue = id.data(), .ulValueLen = id.size()},
          {.type = CKA_EC_PARAMS, .pValue = params.data(), .ulValueLen = params.size()},
      };
      CK_ATTRIBUTE priv_template[] = {
          {.type = CKA_TOKEN, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_PRIVATE, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_SENSITIVE, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_EXTRACTABLE, .pValue = &no, .ulValueLen = sizeof(no)},
          {.type = CKA_SIGN, .pValue = &yes, .ulValueLen = sizeof(yes)},
          {.type = CKA_LABEL, .pValue = label.data(), .ulValueLen = label.size()},
          {.type = CKA_ID, .pValue = id.data(), .ulValueLen = id.size()},
      };
      rv = session->fn()->C_GenerateKeyPair(session->handle(), &mechanism, pub_template,
                                            std::size(pub_template), priv_template,
                                            std::size(priv_template), &pub, &priv);
      if (rv != CKR_DOMAIN_PARAMS_INVALID && rv != CKR_CURVE_NOT_SUPPORTED &&
          rv != CKR_ATTRIBUTE_VALUE_INVALID) {
        break;
      }
    }
    if (rv != CKR_OK) {
      return Fail(RvError("C_GenerateKeyPair", rv));
    }
    AIRLOCK_ASSIGN_OR_RETURN(PublicKey public_key, ReadPublicKey(*session, pub));
    KeyUri made{.token = t.token.label,
                .manufacturer = "",
                .model = "",
                .serial = "",
                .object = t.uri.object,
                .id = t.uri.id,
                .type = "",
                .module_path = t.uri.module_path,
                .pin_value = std::nullopt,
                .pin_source = t.uri.pin_source};
    std::string made_text = made.ToString();
    auto key = MakeKey(session, priv, std::move(public_key), t.token, made_text);
    if (!key) {
      // A key that cannot sign is no use: leave the token as it was.
      session->fn()->C_DestroyObject(session->handle(), priv);
      session->fn()->C_DestroyObject(session->handle(), pub);
      return Fail(std::move(key).error());
    }
    if (made_uri != nullptr) {
      *made_uri = std::move(made_text);
    }
    return key;
  };
  return WithContext(make(), "making a key in PKCS#11 token " + where);
}

}  // namespace airlock::pkcs11
