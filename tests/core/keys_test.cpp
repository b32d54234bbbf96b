#include "core/keys.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <memory>
#include <string>

#include "core/digest.hpp"
#include "core/encoding.hpp"
#include "support/test_support.hpp"

namespace airlock {
namespace {

namespace fs = std::filesystem;
using testing::ReadAll;
using testing::TempDir;
using testing::WriteAll;

std::string Unhex(std::string_view hex) { return HexDecode(hex).value(); }

mode_t ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// PEM files for a key of another algorithm, written by OpenSSL itself.
struct ForeignPem {
  std::string private_pem;
  std::string public_pem;
};

ForeignPem EcP256Pem() {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  EXPECT_TRUE(key);
  std::unique_ptr<BIO, BioFree> priv(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> pub(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
            1);
  EXPECT_EQ(PEM_write_bio_PUBKEY(pub.get(), key.get()), 1);
  return {BioContents(priv.get()), BioContents(pub.get())};
}

// An Ed25519 private key PEM holding the given 32-byte seed, written by OpenSSL.
std::string Ed25519PemFromSeed(const std::string& seed) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  EXPECT_TRUE(key);
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return BioContents(bio.get());
}

TEST(Ed25519Test, GenerateSignVerify) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key) << key.error().ToString();
  std::string sig = key->Sign("release body").value();
  EXPECT_EQ(sig.size(), 64u);
  EXPECT_TRUE(key->public_key().Verify("release body", sig));
}

TEST(Ed25519Test, TamperedMessageOrSignatureFails) {
  auto key = PrivateKey::Generate().value();
  std::string sig = key.Sign("version 7").value();
  EXPECT_FALSE(key.public_key().Verify("version 8", sig));
  EXPECT_FALSE(key.public_key().Verify("version 7 ", sig));
  EXPECT_FALSE(key.public_key().Verify("", sig));
  for (std::size_t i : {0u, 31u, 32u, 63u}) {
    std::string bad = sig;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(key.public_key().Verify("version 7", bad)) << "byte " << i;
  }
  EXPECT_FALSE(key.public_key().Verify("version 7", sig.substr(0, 63)));
  EXPECT_FALSE(key.public_key().Verify("version 7", sig + "x"));
  EXPECT_FALSE(key.public_key().Verify("version 7", ""));
  EXPECT_FALSE(key.public_key().Verify("version 7", std::string(64, '\0')));
  // And the untouched signature still verifies.
  EXPECT_TRUE(key.public_key().Verify("version 7", sig));
}

TEST(Ed25519Test, AnotherKeysSignatureFails) {
  auto a = PrivateKey::Generate().value();
  auto b = PrivateKey::Generate().value();
  EXPECT_NE(a.id(), b.id());
  EXPECT_FALSE(b.public_key().Verify("msg", a.Sign("msg").value()));
}

TEST(Ed25519Test, KeyIdIsSha256HexOfRawPublicKey) {
  auto key = PrivateKey::Generate().value();
  EXPECT_EQ(key.public_key().raw().size(), 32u);
  EXPECT_EQ(key.id().size(), 64u);
  EXPECT_EQ(key.id(), Sha256Of(key.public_key().raw()).hex());
  EXPECT_EQ(key.id(), key.public_key().id());
  EXPECT_EQ(key.id().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(Ed25519Test, Rfc8032TestVector1) {
  // RFC 8032 §7.1, TEST 1: the empty message.
  std::string seed = Unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  std::string pub = Unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  std::string sig = Unhex(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
      "b46bd25bf5f0595bbe24655141438e7a100b");
  auto key = PrivateKey::FromPem(Ed25519PemFromSeed(seed));
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(key->public_key().raw(), pub);
  EXPECT_EQ(key->Sign("").value(), sig);  // Ed25519 is deterministic

  auto pk = PublicKey::FromRaw(pub);
  ASSERT_TRUE(pk);
  EXPECT_TRUE(pk->Verify("", sig));
  EXPECT_EQ(pk->id(), Sha256Of(pub).hex());
}

TEST(Ed25519Test, PublicKeyFromRawRefusesWrongLength) {
  for (std::size_t n : {0u, 31u, 33u, 64u}) {
    auto pk = PublicKey::FromRaw(std::string(n, 'k'));
    ASSERT_FALSE(pk) << n;
    EXPECT_EQ(pk.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Ed25519Test, PemRoundTrips) {
  auto key = PrivateKey::Generate().value();
  std::string priv_pem = key.ToPem().value();
  std::string pub_pem = key.public_key().ToPem();
  EXPECT_NE(priv_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(pub_pem.find("-----BEGIN PUBLIC KEY-----"), std::string::npos);

  auto priv = PrivateKey::FromPem(priv_pem);
  ASSERT_TRUE(priv);
  EXPECT_EQ(priv->id(), key.id());
  EXPECT_EQ(priv->Sign("m").value(), key.Sign("m").value());

  auto pub = PublicKey::FromPem(pub_pem);
  ASSERT_TRUE(pub);
  EXPECT_EQ(pub->raw(), key.public_key().raw());

  // The public half of a private PEM is accepted where a public key is wanted.
  auto half = PublicKey::FromPem(priv_pem);
  ASSERT_TRUE(half);
  EXPECT_EQ(half->id(), key.id());
}

TEST(Ed25519Test, SaveWritesPrivate0600AndPublic0644) {
  TempDir dir;
  auto key = PrivateKey::Generate().value();
  auto st = key.Save(dir / "signer.key", dir / "signer.pub");
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(ModeOf(dir / "signer.key"), 0600u);
  EXPECT_EQ(ModeOf(dir / "signer.pub"), 0644u);
  EXPECT_EQ(ReadAll(dir / "signer.key"), key.ToPem().value());
  EXPECT_EQ(ReadAll(dir / "signer.pub"), key.public_key().ToPem());
}

TEST(Ed25519Test, SaveRefusesToOverwriteEitherFile) {
  TempDir dir;
  auto first = PrivateKey::Generate().value();
  ASSERT_TRUE(first.Save(dir / "a.key", dir / "a.pub"));
  std::string key_before = ReadAll(dir / "a.key");
  std::string pub_before = ReadAll(dir / "a.pub");

  auto second = PrivateKey::Generate().value();
  auto both = second.Save(dir / "a.key", dir / "a.pub");
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(both.error().message().find("a.key"), std::string::npos) << both.error().message();

  // Only the public file exists: still refused, and no private file appears.
  auto pub_only = second.Save(dir / "b.key", dir / "a.pub");
  ASSERT_FALSE(pub_only);
  EXPECT_EQ(pub_only.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_FALSE(fs::exists(dir / "b.key"));

  EXPECT_EQ(ReadAll(dir / "a.key"), key_before);
  EXPECT_EQ(ReadAll(dir / "a.pub"), pub_before);

  // The next good save works.
  ASSERT_TRUE(second.Save(dir / "b.key", dir / "b.pub"));
  EXPECT_EQ(PrivateKey::Load(dir / "b.key")->id(), second.id());
}

TEST(Ed25519Test, LoadRoundTrip) {
  TempDir dir;
  auto key = PrivateKey::Generate().value();
  ASSERT_TRUE(key.Save(dir / "k.key", dir / "k.pub"));

  auto priv = PrivateKey::Load(dir / "k.key");
  ASSERT_TRUE(priv) << priv.error().ToString();
  EXPECT_EQ(priv->id(), key.id());
  // A signature by the loaded key verifies with the original public key and vice versa.
  EXPECT_TRUE(key.public_key().Verify("payload", priv->Sign("payload").value()));

  auto pub = PublicKey::Load(dir / "k.pub");
  ASSERT_TRUE(pub) << pub.error().ToString();
  EXPECT_EQ(pub->id(), key.id());
  EXPECT_TRUE(pub->Verify("payload", key.Sign("payload").value()));
}

TEST(Ed25519Test, LoadingAPublicKeyAsPrivateFailsClearly) {
  TempDir dir;
  auto key = PrivateKey::Generate().value();
  ASSERT_TRUE(key.Save(dir / "k.key", dir / "k.pub"));
  auto priv = PrivateKey::Load(dir / "k.pub");
  ASSERT_FALSE(priv);
  EXPECT_EQ(priv.error().code(), ErrorCode::kInvalidArgument);
  std::string text = priv.error().ToString();
  EXPECT_NE(text.find("k.pub"), std::string::npos) << text;
  EXPECT_NE(text.find("public half"), std::string::npos) << text;
}

TEST(Ed25519Test, NonEd25519KeysAreUnsupported) {
  ForeignPem ec = EcP256Pem();
  ASSERT_FALSE(ec.private_pem.empty());

  auto priv = PrivateKey::FromPem(ec.private_pem);
  ASSERT_FALSE(priv);
  EXPECT_EQ(priv.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(priv.error().message().find("Ed25519"), std::string::npos);

  auto pub = PublicKey::FromPem(ec.public_pem);
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code(), ErrorCode::kUnsupported);

  auto pub_from_private = PublicKey::FromPem(ec.private_pem);
  ASSERT_FALSE(pub_from_private);
  EXPECT_EQ(pub_from_private.error().code(), ErrorCode::kUnsupported);

  TempDir dir;
  WriteAll(dir / "ec.key", ec.private_pem);
  auto loaded = PrivateKey::Load(dir / "ec.key");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(loaded.error().ToString().find("ec.key"), std::string::npos);
}

TEST(Ed25519Test, GarbageAndMissingFilesAreRefused) {
  TempDir dir;
  WriteAll(dir / "junk.key", "this is not a key\n");
  auto junk = PrivateKey::Load(dir / "junk.key");
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().code(), ErrorCode::kInvalidArgument);
  auto junk_pub = PublicKey::Load(dir / "junk.key");
  ASSERT_FALSE(junk_pub);
  EXPECT_EQ(junk_pub.error().code(), ErrorCode::kInvalidArgument);

  auto missing = PrivateKey::Load(dir / "missing.key");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  // An oversized file is refused before it is parsed.
  WriteAll(dir / "huge.key", std::string(1 << 20, 'A'));
  auto huge = PrivateKey::Load(dir / "huge.key");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace airlock
