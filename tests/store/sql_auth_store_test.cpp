// The portable SQL layer (store/sql.hpp) and SqlAuthStore over it, on SQLite and on PostgreSQL:
// component migrations, parameters and NULLs, unique violations, RETURNING, and the tokens and
// audit log shared by two stores on one database (two hubs).

#include "store/sql_auth_store.hpp"

#include <gtest/gtest.h>

#include "backend_fixture.hpp"

namespace airlock::store {
namespace {

class SqlTest : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, SqlTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

const SqlMigration kWidgets[] = {
    {1, "widgets", "CREATE TABLE widgets (id {{serial}}, name TEXT NOT NULL UNIQUE, size BIGINT)"},
    {2, "widget colours", "ALTER TABLE widgets ADD COLUMN colour TEXT;\nCREATE INDEX "
                          "widgets_by_colour ON widgets(colour)"},
};

TEST_P(SqlTest, MigratesAComponentOnceAndRefusesANewerOne) {
  SqlDatabase& db = db_->sql();
  ASSERT_TRUE(MigrateComponent(db, "widgets", std::span(kWidgets).first(1), 100));
  ASSERT_TRUE(MigrateComponent(db, "widgets", kWidgets, 200));
  ASSERT_TRUE(MigrateComponent(db, "widgets", kWidgets, 300));  // nothing left to do
  auto rows = SqlTransact<SqlRows>(db, [](SqlSession& s) {
    return s.Query(
        "SELECT version, applied_at FROM component_migrations WHERE component = ? ORDER BY "
        "version",
        {std::string("widgets")});
  });
  ASSERT_TRUE(rows) << rows.error().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ(rows->Int(0, 1), 100);
  EXPECT_EQ(rows->Int(1, 1), 200);
  // A build that knows only version 1 does not touch a database at version 2.
  auto older = MigrateComponent(db, "widgets", std::span(kWidgets).first(1), 400);
  ASSERT_FALSE(older);
  EXPECT_EQ(older.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(older.error().message().find("widgets schema version 2"), std::string::npos);
}

TEST_P(SqlTest, ParametersNullsUniqueViolationsAndRollback) {
  SqlDatabase& db = db_->sql();
  ASSERT_TRUE(MigrateComponent(db, "widgets", kWidgets, 1));
  auto id = SqlTransact<std::int64_t>(db, [](SqlSession& s) -> Result<std::int64_t> {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r, s.Query("INSERT INTO widgets (name, size, colour) VALUES (?, ?, ?) RETURNING id",
                           {std::string("bolt's \"head\""), std::int64_t{-5}, nullptr}));
    return r.Int(0, 0);
  });
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_GT(*id, 0);

  auto dup = db.Transact([](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(s.Query("INSERT INTO widgets (name) VALUES (?)", {std::string("nut")}));
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("INSERT INTO widgets (name) VALUES (?)", {std::string("bolt's \"head\"")}));
    return {};
  });
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), ErrorCode::kAlreadyExists);

  auto rows = SqlTransact<SqlRows>(db, [](SqlSession& s) {
    return s.Query("SELECT name, size, colour FROM widgets ORDER BY name");
  });
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u) << "the failed transaction's first insert was rolled back";
  EXPECT_EQ(rows->Text(0, 0), "bolt's \"head\"");
  EXPECT_EQ(rows->Int(0, 1), -5);
  EXPECT_TRUE(rows->IsNull(0, 2));
  EXPECT_EQ(rows->MaybeInt(0, 2), std::nullopt);

  auto changed = SqlTransact<SqlRows>(db, [](SqlSession& s) {
    return s.Query("UPDATE widgets SET colour = ? WHERE lower(name) LIKE lower(?)",
                   {std::string("red"), std::string("BOLT%")});
  });
  ASSERT_TRUE(changed);
  EXPECT_EQ(changed->affected, 1);
}

TEST_P(SqlTest, TokensAndAuditAreSharedByTwoHubsOnOneDatabase) {
  auto a = SqlAuthStore::Open(db_->sql(), 1);
  ASSERT_TRUE(a) << a.error().ToString();
  auto other = Open();
  ASSERT_TRUE(other);
  auto b = SqlAuthStore::Open((*other)->sql(), 2);
  ASSERT_TRUE(b) << b.error().ToString();

  TokenRecord t{.name = "ci", .role = "publisher", .hash = std::string(64, 'a'),
                .created_by = "admin", .created_at = 10, .expires_at = 99,
                .revoked_at = std::nullopt};
  ASSERT_TRUE((*a)->CreateToken(t));
  auto again = (*b)->CreateToken(t);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(again.error().message().find("a token named ci exists"), std::string::npos);

  auto found = (*b)->TokenByHash(std::string(64, 'a'));
  ASSERT_TRUE(found) << found.error().ToString();
  EXPECT_EQ(found->name, "ci");
  EXPECT_EQ(found->expires_at, 99);
  EXPECT_EQ(found->revoked_at, std::nullopt);
  EXPECT_EQ((*b)->TokenByName("nobody").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ((*b)->TokenByHash("").error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE((*b)->RevokeToken("ci", 50));
  ASSERT_TRUE((*a)->RevokeToken("ci", 60));  // the first time stays
  EXPECT_EQ((*a)->TokenByName("ci")->revoked_at, 50);
  EXPECT_EQ((*a)->RevokeToken("nobody", 1).error().code(), ErrorCode::kNotFound);

  std::int64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    auto& store = i % 2 == 0 ? **a : **b;
    auto id = store.AppendAudit({.id = 0, .at = 100 + i, .token_name = "ci", .role = "publisher",
                                 .action = "manifest.put", .target = "m:" + std::to_string(i),
                                 .result = "201", .reason = "", .remote = "127.0.0.1"});
    ASSERT_TRUE(id) << id.error().ToString();
    EXPECT_GT(*id, last);
    last = *id;
  }
  auto page = (*a)->ListAudit(0, 3);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].target, "m:4");
  auto rest = (*b)->ListAudit(page->back().id, 10);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[1].target, "m:0");
  EXPECT_EQ((*rest)[1].at, 100);
}

}  // namespace
}  // namespace airlock::store
