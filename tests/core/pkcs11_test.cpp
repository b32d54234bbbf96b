// Keys in a PKCS#11 token: the URI, and a real SoftHSM token per test.

#include "core/pkcs11.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/keys.hpp"
#include "support/softhsm.hpp"
#include "support/test_support.hpp"

namespace airlock::pkcs11 {
namespace {

namespace fs = std::filesystem;
using testing::ReadAll;
using testing::SoftHsm;
using testing::WriteAll;

// A PIN no message may ever contain.
constexpr const char* kSecretPin = "s3cret-7351";

TEST(Pkcs11UriTest, ParsesPathAndQueryAttributes) {
  auto uri = ParseUri(
      "pkcs11:token=Plant%201;object=release-signer;id=%01%a0;type=private"
      "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234");
  ASSERT_TRUE(uri) << uri.error().ToString();
  EXPECT_EQ(uri->token, "Plant 1");
  EXPECT_EQ(uri->object, "release-signer");
  EXPECT_EQ(uri->id, std::string("\x01\xa0", 2));
  EXPECT_EQ(uri->type, "private");
  EXPECT_EQ(uri->module_path, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(uri->pin_value, "1234");
  EXPECT_EQ(uri->pin_source, "");

  // Printed without the PIN, and what is printed parses to the same key.
  std::string printed = uri->ToString();
  EXPECT_EQ(printed,
            "pkcs11:token=Plant%201;object=release-signer;id=%01%A0;type=private"
            "?module-path=/usr/lib/softhsm/libsofthsm2.so");
  auto again = ParseUri(printed);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->token, uri->token);
  EXPECT_EQ(again->id, uri->id);
  EXPECT_FALSE(again->pin_value);
}

TEST(Pkcs11UriTest, PercentDecodingAndTheSchemeFollowTheRfc) {
  // The scheme is case-insensitive; separators and "%" inside a value are percent-encoded.
  EXPECT_TRUE(IsUri("PKCS11:object=a"));
  EXPECT_FALSE(IsUri("keys/pkcs11.key"));
  auto uri = ParseUri("PKCS11:object=a%3Bb%25c%3Fd?pin-source=file:/run/pin%20file");
  ASSERT_TRUE(uri) << uri.error().ToString();
  EXPECT_EQ(uri->object, "a;b%c?d");
  EXPECT_EQ(uri->pin_source, "file:/run/pin file");
  EXPECT_EQ(uri->ToString(), "pkcs11:object=a%3Bb%25c%3Fd?pin-source=file:/run/pin%20file");
  // An id alone names a key, too.
  auto by_id = ParseUri("pkcs11:token=t;id=%ff");
  ASSERT_TRUE(by_id) << by_id.error().ToString();
  EXPECT_EQ(by_id->id, std::string("\xff", 1));
}

TEST(Pkcs11UriTest, BadUrisAreRefusedWithoutQuotingSecrets) {
  const std::string pin = kSecretPin;
  struct Case {
    std::string uri;
    std::string says;
  };
  const Case cases[] = {
      {"file:/keys/a.key", "must start with \"pkcs11:\""},
      {"pkcs11:object=a;object=b", "object is given twice"},
      {"pkcs11:object=a%4", "bad percent-encoding in object"},
      {"pkcs11:object=a?pin-value=" + pin + "%zz", "bad percent-encoding in pin-value"},
      {"pkcs11:object=a;slot-id=3", "unsupported path attribute slot-id"},
      {"pkcs11:object=a?module-name=softhsm2", "module-name is not supported"},
      {"pkcs11:object=a?pin-value=" + pin + "&pin-source=file:/p", "not both"},
      {"pkcs11:object=a?pin-value=" + pin + "&pin-value=" + pin, "pin-value is given twice"},
      {"pkcs11:token=t", "names no key"},
      {"pkcs11:object=a;type=cert", "type=cert"},
      {"pkcs11:object", "not name=value"},
      {"pkcs11:" + pin, "not name=value"},
  };
  for (const auto& c : cases) {
    auto uri = ParseUri(c.uri);
    ASSERT_FALSE(uri) << c.uri;
    EXPECT_EQ(uri.error().code(), ErrorCode::kInvalidArgument) << c.uri;
    std::string message = uri.error().ToString();
    EXPECT_NE(message.find(c.says), std::string::npos) << c.uri << " -> " << message;
    EXPECT_EQ(message.find(pin), std::string::npos) << c.uri << " -> " << message;
  }
  // PrivateKey::Load says where the bad URI came from, still without the PIN.
  auto key = PrivateKey::Load("pkcs11:object=a?pin-value=" + pin + "&pin-value=x");
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().ToString().find("PKCS#11 URI"), std::string::npos);
  EXPECT_EQ(key.error().ToString().find(pin), std::string::npos);
}

class Pkcs11TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AIRLOCK_SKIP_WITHOUT_SOFTHSM();
    hsm_ = std::make_unique<SoftHsm>();
    ASSERT_TRUE(hsm_->ready());
  }

  // The environment a user with AIRLOCK_PKCS11_MODULE and AIRLOCK_PKCS11_PIN set would have.
  static Environment Env() {
    return Environment{.module = SoftHsm::Module().string(), .pin = SoftHsm::kPin};
  }
  static Environment NoEnv() { return Environment{.module = std::nullopt, .pin = std::nullopt}; }

  // Makes a key labelled label in the token; returns the URI keygen prints.
  std::string MakeKey(const std::string& label) {
    std::string made;
    auto key = GenerateKey(hsm_->Uri(label), Env(), &made);
    EXPECT_TRUE(key) << key.error().ToString();
    return made;
  }

  std::unique_ptr<SoftHsm> hsm_;
};

TEST_F(Pkcs11TokenTest, GeneratedKeySignsAndItsSignaturesVerify) {
  std::string made;
  auto key = GenerateKey(hsm_->Uri("release-signer"), Env(), &made);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_FALSE(key->exportable());
  EXPECT_EQ(key->id().size(), 64u);
  // The printed URI names the token, the label, the id it was given and the module; no PIN.
  EXPECT_EQ(made.rfind("pkcs11:token=airlock-test;object=release-signer;id=%", 0), 0u) << made;
  EXPECT_NE(made.find("?module-path=" + SoftHsm::Module().string()), std::string::npos) << made;
  EXPECT_EQ(made.find("pin"), std::string::npos) << made;

  auto signature = key->Sign("release body");
  ASSERT_TRUE(signature) << signature.error().ToString();
  EXPECT_EQ(signature->size(), 64u);
  EXPECT_TRUE(key->public_key().Verify("release body", *signature));
  EXPECT_FALSE(key->public_key().Verify("another body", *signature));

  // Opened again later by the URI keygen printed (the PIN from the environment): the same key.
  auto opened = OpenKey(made, Env());
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(opened->id(), key->id());
  EXPECT_EQ(opened->Sign("release body").value(), *signature);  // Ed25519 is deterministic
}

TEST_F(Pkcs11TokenTest, KeyIdAndSignaturesEqualTheKeyFilesOfTheSameKey) {
  // A key made as a file, then imported into the token by its administrator.
  auto file_key = PrivateKey::Generate().value();
  ASSERT_TRUE(file_key.Save(hsm_->dir() / "k.key", hsm_->dir() / "k.pub"));
  auto import = hsm_->Import(hsm_->dir() / "k.key", "imported", "0a0b");
  ASSERT_EQ(import.exit_code, 0) << import.out << import.err;

  auto token_key = OpenKey(hsm_->UriWithPin("imported"), NoEnv());
  ASSERT_TRUE(token_key) << token_key.error().ToString();
  EXPECT_EQ(token_key->id(), file_key.id());
  EXPECT_EQ(token_key->id(), PublicKey::Load(hsm_->dir() / "k.pub").value().id());
  EXPECT_EQ(token_key->public_key().raw(), file_key.public_key().raw());
  EXPECT_EQ(token_key->Sign("canonical bytes").value(), file_key.Sign("canonical bytes").value());

  // Also by id alone, and through PrivateKey::Load as every -k does.
  std::string id_uri = std::string("pkcs11:token=") + SoftHsm::kToken +
                       ";id=%0a%0b?module-path=" + SoftHsm::Module().string() + "&pin-value=1234";
  auto loaded = PrivateKey::Load(id_uri);
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  EXPECT_EQ(loaded->id(), file_key.id());
}

TEST_F(Pkcs11TokenTest, TheTokenKeyCannotBeExported) {
  std::string made = MakeKey("kept-inside");
  auto key = OpenKey(made, Env()).value();
  auto pem = key.ToPem();
  ASSERT_FALSE(pem);
  EXPECT_EQ(pem.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(pem.error().ToString().find("lives in its token"), std::string::npos);
  auto saved = key.Save(hsm_->dir() / "copy.key", hsm_->dir() / "copy.pub");
  ASSERT_FALSE(saved);
  EXPECT_FALSE(fs::exists(hsm_->dir() / "copy.key"));
  EXPECT_FALSE(fs::exists(hsm_->dir() / "copy.pub"));
}

TEST_F(Pkcs11TokenTest, PublicKeyLoadReadsTheTokenWithOrWithoutAPin) {
  std::string made = MakeKey("public-too");
  auto key = OpenKey(made, Env()).value();
  auto without_pin = OpenPublicKey(made, Environment{.module = std::nullopt, .pin = std::nullopt});
  ASSERT_TRUE(without_pin) << without_pin.error().ToString();
  EXPECT_EQ(without_pin->id(), key.id());
  auto with_pin = OpenPublicKey(made, Env());
  ASSERT_TRUE(with_pin) << with_pin.error().ToString();
  EXPECT_EQ(with_pin->id(), key.id());
}

TEST_F(Pkcs11TokenTest, ThePinComesFromTheUriAFileOrTheEnvironment) {
  std::string made = MakeKey("pins");
  // pin-source: the file's first line.
  WriteAll(hsm_->dir() / "pin", std::string(SoftHsm::kPin) + "\n");
  auto from_file = OpenKey(made + "&pin-source=file:" + (hsm_->dir() / "pin").string(), NoEnv());
  EXPECT_TRUE(from_file) << from_file.error().ToString();
  // The environment's PIN; the URI's wins over it.
  EXPECT_TRUE(OpenKey(made, Environment{.module = std::nullopt, .pin = SoftHsm::kPin}));
  EXPECT_TRUE(
      OpenKey(made + "&pin-value=1234", Environment{.module = std::nullopt, .pin = kSecretPin}));
  // The module from the environment when the URI has none.
  std::string no_module = made.substr(0, made.find('?'));
  EXPECT_TRUE(OpenKey(no_module, Env()));
}

TEST_F(Pkcs11TokenTest, AWrongPinIsRefusedClearlyAndTheRightOneStillWorks) {
  std::string made = MakeKey("guarded");
  auto wrong = OpenKey(made, Environment{.module = std::nullopt, .pin = kSecretPin});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidArgument);
  std::string message = wrong.error().ToString();
  EXPECT_NE(message.find("wrong PIN for token \"airlock-test\" (CKR_PIN_INCORRECT)"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find(kSecretPin), std::string::npos) << message;
  // Given in the URI, the PIN stays out of the message too.
  auto in_uri = OpenKey(made + "&pin-value=" + kSecretPin, NoEnv());
  ASSERT_FALSE(in_uri);
  EXPECT_EQ(in_uri.error().ToString().find(kSecretPin), std::string::npos);
  // No PIN at all.
  auto none = OpenKey(made, NoEnv());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().ToString().find("needs its user PIN"), std::string::npos);
  // The token is unharmed: the right PIN opens the key.
  auto right = OpenKey(made, Env());
  ASSERT_TRUE(right) << right.error().ToString();
  EXPECT_TRUE(right->Sign("after").has_value());
}

TEST_F(Pkcs11TokenTest, MissingKeyTokenAndModuleAreNamed) {
  MakeKey("present");
  auto missing = OpenKey(hsm_->Uri("absent"), Env());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().ToString().find(
                "no private key labelled \"absent\" in token \"airlock-test\""),
            std::string::npos)
      << missing.error().ToString();

  auto no_token = OpenKey("pkcs11:token=elsewhere;object=present", Env());
  ASSERT_FALSE(no_token);
  EXPECT_EQ(no_token.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(no_token.error().ToString().find("no token \"elsewhere\""), std::string::npos);
  EXPECT_NE(no_token.error().ToString().find("its tokens: \"airlock-test\""), std::string::npos)
      << no_token.error().ToString();

  auto no_module =
      OpenKey("pkcs11:object=present?module-path=/nonexistent/libnothing.so&pin-value=" +
                  std::string(kSecretPin),
              NoEnv());
  ASSERT_FALSE(no_module);
  EXPECT_EQ(no_module.error().code(), ErrorCode::kNotFound);
  std::string message = no_module.error().ToString();
  EXPECT_NE(message.find("PKCS#11 module /nonexistent/libnothing.so not found"), std::string::npos)
      << message;
  EXPECT_NE(message.find("apt-get install softhsm2"), std::string::npos) << message;
  EXPECT_EQ(message.find(kSecretPin), std::string::npos) << message;

  auto unnamed = OpenKey("pkcs11:object=present", NoEnv());
  ASSERT_FALSE(unnamed);
  EXPECT_NE(unnamed.error().ToString().find("AIRLOCK_PKCS11_MODULE"), std::string::npos);

  auto not_a_module = OpenKey("pkcs11:object=present?module-path=/usr/lib/os-release", NoEnv());
  ASSERT_FALSE(not_a_module);
  EXPECT_NE(not_a_module.error().ToString().find("cannot load PKCS#11 module"), std::string::npos)
      << not_a_module.error().ToString();
}

TEST_F(Pkcs11TokenTest, AKeyOfAnotherAlgorithmIsRefused) {
  // An ECDSA P-256 key, imported the way an administrator would.
  auto gen =
      testing::RunCommand({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                           "ec_paramgen_curve:P-256", "-out", (hsm_->dir() / "p256.pem").string()});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto import = hsm_->Import(hsm_->dir() / "p256.pem", "ecdsa", "0c");
  ASSERT_EQ(import.exit_code, 0) << import.out << import.err;
  auto key = OpenKey(hsm_->Uri("ecdsa"), Env());
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(key.error().ToString().find("is an ECDSA key, not Ed25519"), std::string::npos)
      << key.error().ToString();
  auto pub = OpenPublicKey(hsm_->Uri("ecdsa"), Env());
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code(), ErrorCode::kUnsupported);
}

TEST_F(Pkcs11TokenTest, KeygenNeverReusesALabelOrAnId) {
  std::string made = MakeKey("unique");
  std::string again;
  auto twice = GenerateKey(hsm_->Uri("unique"), Env(), &again);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(twice.error().ToString().find("already holds a key labelled \"unique\""),
            std::string::npos);
  EXPECT_TRUE(again.empty());
  std::string id = made.substr(made.find(";id=") + 4);
  id = id.substr(0, id.find('?'));
  auto reused =
      GenerateKey(std::string("pkcs11:token=airlock-test;object=other;id=") + id, Env(), &again);
  ASSERT_FALSE(reused);
  EXPECT_EQ(reused.error().code(), ErrorCode::kAlreadyExists);
  // The first key is untouched.
  EXPECT_TRUE(OpenKey(made, Env()));
}

TEST_F(Pkcs11TokenTest, KeysInOneModuleShareItAndOutliveEachOther) {
  std::string a = MakeKey("a");
  std::string b = MakeKey("b");
  auto key_b = OpenKey(b, Env()).value();
  {
    auto key_a = OpenKey(a, Env()).value();
    auto copy_a = key_a;
    EXPECT_TRUE(copy_a.Sign("x").has_value());
  }
  // The module stays initialised for b after a's last copy is gone.
  auto signature = key_b.Sign("still here");
  ASSERT_TRUE(signature) << signature.error().ToString();
  EXPECT_TRUE(key_b.public_key().Verify("still here", *signature));
}

TEST_F(Pkcs11TokenTest, OneKeySignsFromManyThreads) {
  auto key = OpenKey(MakeKey("busy"), Env()).value();
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string message = "message " + std::to_string(t) + "/" + std::to_string(i);
        auto signature = key.Sign(message);
        if (signature && key.public_key().Verify(message, *signature)) {
          ++good[t];
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(good, std::vector<int>(4, 25));
}

// A token whose module does not offer CKM_EDDSA (SoftHSM with the mechanism switched off).
TEST(Pkcs11MechanismTest, ATokenWithoutEddsaIsRefused) {
  AIRLOCK_SKIP_WITHOUT_SOFTHSM();
  SoftHsm hsm("slots.mechanisms = ALL,-CKM_EDDSA");
  ASSERT_TRUE(hsm.ready());
  const Environment env{.module = std::nullopt, .pin = SoftHsm::kPin};
  std::string made;
  auto keygen = GenerateKey(hsm.Uri("signer"), env, &made);
  ASSERT_FALSE(keygen);
  EXPECT_EQ(keygen.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(keygen.error().ToString().find(
                "token \"airlock-test\" does not support CKM_EDDSA (Ed25519 signing)"),
            std::string::npos)
      << keygen.error().ToString();

  // A key put there by other means cannot sign either; the refusal says why before any PIN use.
  auto file_key = PrivateKey::Generate().value();
  ASSERT_TRUE(file_key.Save(hsm.dir() / "k.key", hsm.dir() / "k.pub"));
  auto import = hsm.Import(hsm.dir() / "k.key", "signer", "01");
  ASSERT_EQ(import.exit_code, 0) << import.out << import.err;
  auto key = OpenKey(hsm.Uri("signer"), env);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(key.error().ToString().find("does not support CKM_EDDSA"), std::string::npos)
      << key.error().ToString();
  // Its public half is still readable: a verifier needs no EdDSA in the token.
  auto pub = OpenPublicKey(hsm.Uri("signer"), env);
  ASSERT_TRUE(pub) << pub.error().ToString();
  EXPECT_EQ(pub->id(), file_key.id());
}

}  // namespace
}  // namespace airlock::pkcs11
