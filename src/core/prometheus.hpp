#pragma once
// The Prometheus text exposition format, version 0.0.4 (what /metrics of the agent, the hub and
// the gateway serve; https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// MetricsText collects families and their samples and writes them out with each family's HELP and
// TYPE once, followed by all of its samples together, as the format requires. Samples go to the
// family named last by Family(); naming a family again continues it (its first HELP and TYPE
// stand), so independent pieces of code — a daemon and the hooks that append to its /metrics —
// may each add samples to one family without coordinating. Label values and HELP texts are
// escaped (backslash, double quote in label values, newline); metric and label names are
// constants of the code and must be valid (asserted).
//
// Values: integers are written as integers, floating values in the shortest form that reads back
// exactly, and +Inf, -Inf and NaN as the format spells them.
//
// Not thread-safe: one MetricsText per scrape.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace airlock::prometheus {

enum class MetricType { kCounter, kGauge, kHistogram };
const char* MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

// One label of a sample. The name is [a-zA-Z_][a-zA-Z0-9_]* (not "le", which histograms add);
// the value is any text.
struct Label {
  std::string_view name;
  std::string_view value;
};
using Labels = std::vector<Label>;

// A histogram's observations, as the code keeps them: a count per bucket (not cumulative).
struct HistogramCounts {
  std::span<const double> upper_bounds;  // ascending and finite; +Inf is implied
  // upper_bounds.size() + 1 counts: one per bound, then the observations above every bound.
  std::span<const std::uint64_t> counts;
  double sum = 0;  // of every observation
};

// Whether name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name
// ([a-zA-Z_][a-zA-Z0-9_]*).
bool IsMetricName(std::string_view name);
bool IsLabelName(std::string_view name);
// A label value escaped for the text format: \ → \\, " → \", newline → \n.
std::string EscapeLabelValue(std::string_view value);
// A sample value: integers as written, +Inf, -Inf, NaN, otherwise the shortest decimal form that
// reads back to the same double.
std::string FormatValue(double value);

// What a sample's value may be: any integer or floating type (not bool).
template <typename T>
concept SampleValue = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;

class MetricsText {
 public:
  // Starts, or continues, the family name (a valid metric name). The first call's type and help
  // are written; a later call with another type is a bug of the caller (asserted; its samples
  // would then be read with the first type).
  MetricsText& Family(std::string_view name, MetricType type, std::string_view help);

  // A sample of the current family (a counter or a gauge): NAME{labels} value. Precondition: a
  // family was started.
  template <SampleValue T>
  MetricsText& Sample(const Labels& labels, T value) {
    if constexpr (std::is_integral_v<T>) {
      if constexpr (std::is_signed_v<T>) {
        return WriteSample("", labels, std::to_string(static_cast<std::int64_t>(value)));
      } else {
        return WriteSample("", labels, std::to_string(static_cast<std::uint64_t>(value)));
      }
    } else {
      return WriteSample("", labels, FormatValue(static_cast<double>(value)));
    }
  }
  template <SampleValue T>
  MetricsText& Sample(T value) {
    return Sample(Labels{}, value);
  }

  // The samples of one histogram of the current family (a histogram): NAME_bucket{labels,le=…}
  // with cumulative counts, the +Inf bucket, NAME_sum and NAME_count. Preconditions: a family was
  // started; h.counts has h.upper_bounds.size() + 1 entries.
  MetricsText& Histogram(const Labels& labels, const HistogramCounts& h);

  // Whether a family of that name was started.
  bool Contains(std::string_view name) const;

  // The exposition: every family in the order it was first started.
  std::string Text() const;

 private:
  struct FamilyText {
    std::string name;
    MetricType type = MetricType::kGauge;
    std::string help;
    std::string samples;
  };

  MetricsText& WriteSample(std::string_view suffix, const Labels& labels, const std::string& value,
                           const Label* extra = nullptr);

  std::vector<FamilyText> families_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name → position in families_
  std::optional<std::size_t> current_;                     // the family samples go to
};

// What a daemon's /metrics calls on every scrape so that other parts of the process (pipelines,
// telemetry outboxes) add their families. It runs on the HTTP server's thread, must not block for
// long, and must be thread-safe against the parts it reads.
using MetricsAppender = std::function<void(MetricsText& out)>;

// The Content-Type of the text format.
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace airlock::prometheus
