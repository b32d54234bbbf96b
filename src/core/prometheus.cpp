#include "core/prometheus.hpp"

#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace airlock::prometheus {
namespace {

bool NameChar(char c, bool first, bool colon) {
  bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
  return letter || (!first && c >= '0' && c <= '9');
}

bool IsName(std::string_view name, bool colon) {
  if (name.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, colon)) {
      return false;
    }
  }
  return true;
}

// HELP text: \ → \\, newline → \n (quotes stay as they are there).
std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool IsMetricName(std::string_view name) { return IsName(name, true); }
bool IsLabelName(std::string_view name) { return IsName(name, false); }

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  // Whole numbers as integers (as the agent always wrote them); the rest in the fewest digits
  // that read back to the same double (%g keeps 0.0001 and 250000 as a person writes them).
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<std::int64_t>(value));
  }
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    double back = 0;
    auto [end, ec] = std::from_chars(buf, buf + std::char_traits<char>::length(buf), back);
    if (ec == std::errc() && back == value) {
      break;
    }
  }
  return buf;
}

MetricsText& MetricsText::Family(std::string_view name, MetricType type, std::string_view help) {
  assert(IsMetricName(name));
  if (auto it = index_.find(name); it != index_.end()) {
    assert(families_[it->second].type == type);
    current_ = it->second;
    return *this;
  }
  current_ = families_.size();
  index_.emplace(std::string(name), families_.size());
  families_.push_back({std::string(name), type, EscapeHelp(help), ""});
  return *this;
}

MetricsText& MetricsText::WriteSample(std::string_view suffix, const Labels& labels,
                                      const std::string& value, const Label* extra) {
  assert(current_);
  if (!current_) {
    return *this;
  }
  FamilyText& f = families_[*current_];
  std::string& out = f.samples;
  out += f.name;
  out += suffix;
  if (!labels.empty() || extra != nullptr) {
    out += '{';
    bool first = true;
    auto add = [&](const Label& l) {
      assert(IsLabelName(l.name));
      if (!first) {
        out += ',';
      }
      first = false;
      out += l.name;
      out += "=\"";
      out += EscapeLabelValue(l.value);
      out += '"';
    };
    for (const Label& l : labels) {
      add(l);
    }
    if (extra != nullptr) {
      add(*extra);
    }
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
  return *this;
}

MetricsText& MetricsText::Histogram(const Labels& labels, const HistogramCounts& h) {
  assert(h.counts.size() == h.upper_bounds.size() + 1);
  if (h.counts.size() != h.upper_bounds.size() + 1) {
    return *this;
  }
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.upper_bounds.size(); ++i) {
    cumulative += h.counts[i];
    std::string le = FormatValue(h.upper_bounds[i]);
    Label bound{"le", le};
    WriteSample("_bucket", labels, std::to_string(cumulative), &bound);
  }
  cumulative += h.counts.back();
  Label inf{"le", "+Inf"};
  WriteSample("_bucket", labels, std::to_string(cumulative), &inf);
  WriteSample("_sum", labels, FormatValue(h.sum));
  return WriteSample("_count", labels, std::to_string(cumulative));
}

bool MetricsText::Contains(std::string_view name) const { return index_.contains(name); }

std::string MetricsText::Text() const {
  std::string out;
  for (const FamilyText& f : families_) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    out += f.help;
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += MetricTypeName(f.type);
    out += '\n';
    out += f.samples;
  }
  return out;
}

}  // namespace airlock::prometheus
