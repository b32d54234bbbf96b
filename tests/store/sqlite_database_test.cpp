// SqliteDatabase: a plain SQLite file behind the portable SqlDatabase interface.

#include "store/sqlite_database.hpp"

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace airlock::store {
namespace {

const SqlMigration kNotes[] = {
    {1, "notes", "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"},
};

TEST(SqliteDatabase, MigratesCommitsRollsBackAndKeepsDataAcrossReopen) {
  testing::TempDir dir;
  auto path = dir.path() / "plain.db";
  {
    auto db = SqliteDatabase::Open(path);
    ASSERT_TRUE(db) << db.error().ToString();
    ASSERT_TRUE(MigrateComponent(**db, "notes", kNotes, 1));
    ASSERT_TRUE((*db)->Transact([](SqlSession& s) -> Status {
      return s.Query("INSERT INTO notes VALUES (?, ?)", {std::int64_t{1}, std::string("kept")})
          .transform([](auto&&) {});
    }));
    Status failed = (*db)->Transact([](SqlSession& s) -> Status {
      AIRLOCK_RETURN_IF_ERROR(
          s.Query("INSERT INTO notes VALUES (?, ?)", {std::int64_t{2}, std::string("lost")}));
      return Fail(ErrorCode::kInternal, "the body fails");
    });
    EXPECT_FALSE(failed);
    auto dup = (*db)->Transact([](SqlSession& s) -> Status {
      return s.Query("INSERT INTO notes VALUES (1, 'x')").transform([](auto&&) {});
    });
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code(), ErrorCode::kAlreadyExists);
  }
  auto db = SqliteDatabase::Open(path);
  ASSERT_TRUE(db);
  ASSERT_TRUE(MigrateComponent(**db, "notes", kNotes, 2));  // already applied: nothing to do
  auto rows =
      SqlQueryAll<std::string>(**db, "SELECT body FROM notes ORDER BY id", {},
                               [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); });
  ASSERT_TRUE(rows) << rows.error().ToString();
  EXPECT_EQ(*rows, std::vector<std::string>{"kept"});
}

TEST(SqliteDatabase, AnUnopenablePathIsAClearError) {
  auto db = SqliteDatabase::Open("/nonexistent-dir/x/plain.db");
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code(), ErrorCode::kIo);
  EXPECT_NE(db.error().message().find("/nonexistent-dir/x/plain.db"), std::string::npos);
}

}  // namespace
}  // namespace airlock::store
