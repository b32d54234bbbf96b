#include "core/result.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace airlock {
namespace {

TEST(ErrorTest, ToStringWithoutContextIsTheMessage) {
  Error e(ErrorCode::kNotFound, "blob sha256:abc is missing");
  EXPECT_EQ(e.ToString(), "blob sha256:abc is missing");
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_TRUE(e.context().empty());
}

TEST(ErrorTest, ToStringPrintsOutermostContextFirst) {
  Error e(ErrorCode::kCorrupt, "digest mismatch");
  e.WithContext("while reading blob sha256:abc");  // innermost, added first
  e.WithContext("while pulling model demo");       // outermost, added last
  EXPECT_EQ(e.ToString(),
            "while pulling model demo: while reading blob sha256:abc: digest mismatch");
  ASSERT_EQ(e.context().size(), 2u);
  EXPECT_EQ(e.context()[0], "while reading blob sha256:abc");
  EXPECT_EQ(e.message(), "digest mismatch");
}

TEST(ErrorTest, RvalueWithContextChains) {
  Error e = Error(ErrorCode::kIo, "disk full").WithContext("inner").WithContext("outer");
  EXPECT_EQ(e.ToString(), "outer: inner: disk full");
  EXPECT_EQ(e.code(), ErrorCode::kIo);
}

TEST(ErrorTest, WithContextOnResultAddsToFailuresOnly) {
  Result<int> bad = Fail(ErrorCode::kInvalidArgument, "bad flag");
  Result<int> annotated = WithContext(std::move(bad), "while parsing flags");
  ASSERT_FALSE(annotated);
  EXPECT_EQ(annotated.error().ToString(), "while parsing flags: bad flag");

  Result<int> good = 7;
  Result<int> passed = WithContext(std::move(good), "unused");
  ASSERT_TRUE(passed);
  EXPECT_EQ(*passed, 7);
}

TEST(ErrorCodeNameTest, EveryCodeHasADistinctStableName) {
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kInvalidArgument), "invalid-argument");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kNotFound), "not-found");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kAlreadyExists), "already-exists");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kIo), "io");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kCorrupt), "corrupt");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kUnsupported), "unsupported");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kVerification), "verification");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kModel), "model");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kMismatch), "mismatch");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kInternal), "internal");

  std::set<std::string> names;
  for (int c = static_cast<int>(ErrorCode::kInvalidArgument);
       c <= static_cast<int>(ErrorCode::kInternal); ++c) {
    names.insert(ErrorCodeName(static_cast<ErrorCode>(c)));
  }
  EXPECT_EQ(names.size(), 10u);
}

Status FailsWith(ErrorCode code) { return Fail(code, "inner failure"); }

Result<int> Doubles(Result<int> in) {
  AIRLOCK_ASSIGN_OR_RETURN(int v, std::move(in));
  return v * 2;
}

Status Propagates(Status in) {
  AIRLOCK_RETURN_IF_ERROR(std::move(in));
  return {};
}

TEST(ResultMacrosTest, AssignOrReturnBindsValueOrPropagatesError) {
  auto ok = Doubles(21);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 42);

  auto bad = Doubles(Fail(ErrorCode::kCorrupt, "truncated"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(bad.error().message(), "truncated");
}

TEST(ResultMacrosTest, ReturnIfErrorPropagatesCodeAndMessage) {
  EXPECT_TRUE(Propagates({}));
  auto bad = Propagates(FailsWith(ErrorCode::kVerification));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kVerification);
  EXPECT_EQ(bad.error().message(), "inner failure");
}

}  // namespace
}  // namespace airlock
