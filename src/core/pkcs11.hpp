#pragma once
// Ed25519 keys held in a PKCS#11 token (a hardware security module, a smart card, SoftHSM), named
// by a PKCS#11 URI and used to sign without the private key ever entering this process.
//
// A key spec is a subset of RFC 7512:
//
//   pkcs11:token=airlock;object=alice;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so
//          &pin-source=file:/etc/airlock/token.pin
//
// Path attributes (before "?", separated by ";"): token, manufacturer, model, serial (which
// token), object (the key's CKA_LABEL), id (its CKA_ID, usually percent-encoded bytes), type
// (private or public; either names the key pair). Query attributes (after "?", separated by "&"):
// module-path (the token vendor's PKCS#11 library), pin-value, pin-source (a file: URI or an
// absolute path; its first line is the PIN). Values are percent-decoded. When the URI has no
// module-path, AIRLOCK_PKCS11_MODULE names the module; when it has neither pin-value nor
// pin-source, AIRLOCK_PKCS11_PIN is the PIN. PrivateKey::Load and PublicKey::Load (core/keys.hpp)
// take such a URI wherever they take a key file.
//
// The module is loaded with dlopen when a key is opened: Airlock has no link-time dependency on
// any PKCS#11 library. PKCS#11 allows a module to be initialised once per process, so keys in one
// module share one loaded, initialised copy of it (a process-wide table, the one global here, as
// the module's own state is process-wide); it is finalised and unloaded when the last key using it
// dies. Each opened key holds its own session with the token.
//
// Secrets: the PIN is used to log in and then forgotten; it is never logged nor put in an error
// message, and URIs are printed by KeyUri::ToString, which leaves pin-value out.
//
// Thread safety: all functions may be called from any thread. A PrivateKey opened here is
// immutable and may be shared between threads; signing through one session is serialised.
// Lifetime: the key's session (and the module) stay open while any copy of the PrivateKey lives.

#include <optional>
#include <string>
#include <string_view>

#include "core/keys.hpp"
#include "core/result.hpp"

namespace airlock::pkcs11 {

// True when spec is meant as a PKCS#11 URI: it starts with "pkcs11:" (the scheme in any case).
bool IsUri(std::string_view spec);

// A parsed key URI. Empty path attributes match anything.
struct KeyUri {
  std::string token;                     // token=: the token's label (CK_TOKEN_INFO.label)
  std::string manufacturer;              // manufacturer=: CK_TOKEN_INFO.manufacturerID
  std::string model;                     // model=: CK_TOKEN_INFO.model
  std::string serial;                    // serial=: CK_TOKEN_INFO.serialNumber
  std::string object;                    // object=: the key's CKA_LABEL
  std::optional<std::string> id;         // id=: the key's CKA_ID, raw bytes
  std::string type;                      // type=: "private", "public" or empty
  std::string module_path;               // module-path=
  std::optional<std::string> pin_value;  // pin-value=; a secret, never printed
  std::string pin_source;                // pin-source=, as written (file:/path or /path)

  // The URI, percent-encoded where needed, without pin-value: safe to print and log.
  std::string ToString() const;
};

// Parses text as a key URI. Refuses (kInvalidArgument) another scheme, an unknown or repeated
// attribute, bad percent-encoding, an unknown type, pin-value together with pin-source, and a URI
// that names no key (neither object nor id). Error messages never quote pin-value.
[[nodiscard]] Result<KeyUri> ParseUri(std::string_view text);

// What the environment adds to a URI. FromProcess reads AIRLOCK_PKCS11_MODULE and
// AIRLOCK_PKCS11_PIN; tests build one by hand.
struct Environment {
  std::optional<std::string> module;  // used when the URI has no module-path
  std::optional<std::string> pin;     // used when the URI has neither pin-value nor pin-source

  static Environment FromProcess();
};

// Opens the Ed25519 key pair uri names: loads the module, finds the one matching token, logs in
// with the PIN, finds the private key (CKO_PRIVATE_KEY, CKK_EC_EDWARDS) and its public key (the
// CKO_PUBLIC_KEY with the same CKA_ID, or with the same label when the key has no CKA_ID), checks
// that the token signs with CKM_EDDSA, and makes one signature to check that the two halves
// belong together. Blocks on the token. Errors say what to do: kNotFound for a missing module,
// token or key; kInvalidArgument for a bad URI, a module that does not load, a missing or wrong
// PIN; kUnsupported for a key that is not Ed25519 or a token without CKM_EDDSA; kIo for other
// token failures.
[[nodiscard]] Result<PrivateKey> OpenKey(std::string_view uri, const Environment& env);

// The public key of the key pair uri names. Logs in only when a PIN is available (public objects
// are readable without one on most tokens). Errors as for OpenKey.
[[nodiscard]] Result<PublicKey> OpenPublicKey(std::string_view uri, const Environment& env);

// Makes a new Ed25519 key pair in the token uri names (C_GenerateKeyPair with
// CKM_EC_EDWARDS_KEY_PAIR_GEN): both halves are token objects labelled with uri's object and
// given uri's id, or 16 random bytes when it has none; the private half is sensitive,
// non-extractable, and may only sign. Refuses (kAlreadyExists) when the token already holds a key
// with that label or id, and (kInvalidArgument) a URI without object=. On success returns the key,
// open for signing, and in *made_uri the URI that names it (with its id, without any PIN).
[[nodiscard]] Result<PrivateKey> GenerateKey(std::string_view uri, const Environment& env,
                                             std::string* made_uri);

}  // namespace airlock::pkcs11
