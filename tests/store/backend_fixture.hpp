#pragma once
// A fresh metadata database for each test, on each backend: SQLite in a temporary directory, or a
// new database in the shared throwaway PostgreSQL cluster (tests/support/postgres.hpp).

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "store/metadata_store.hpp"
#include "store/postgres_metadata_store.hpp"
#include "store/sqlite_metadata_store.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace airlock::store {

class BackendTest : public ::testing::TestWithParam<airlock::testing::MetadataBackend> {
 protected:
  void SetUp() override {
    if (GetParam() == airlock::testing::MetadataBackend::kPostgres) {
      try {
        uri_ = airlock::testing::SharedPostgres().CreateDatabase();
      } catch (const std::exception& e) {
        FAIL() << e.what();
      }
    }
    auto s = Open();
    ASSERT_TRUE(s) << s.error().ToString();
    db_ = std::move(*s);
  }

  // Another store on the same database (a second hub, or a restart).
  Result<std::unique_ptr<MetadataStore>> Open() {
    if (GetParam() == airlock::testing::MetadataBackend::kSqlite) {
      AIRLOCK_ASSIGN_OR_RETURN(auto s, SqliteMetadataStore::Open(dir_ / "metadata.db"));
      return std::unique_ptr<MetadataStore>(std::move(s));
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto s, PostgresMetadataStore::Open(uri_));
    return std::unique_ptr<MetadataStore>(std::move(s));
  }

  airlock::testing::TempDir dir_;
  std::string uri_;
  std::unique_ptr<MetadataStore> db_;
};

}  // namespace airlock::store
