#include "cli/table.hpp"

#include <algorithm>

namespace airlock::cli {

namespace {

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

std::size_t DisplayWidth(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !IsContinuationByte(c); }));
}

std::string Shorten(std::string_view text, std::size_t max) {
  std::string flat(text);
  std::replace(flat.begin(), flat.end(), '\n', ' ');
  std::replace(flat.begin(), flat.end(), '\t', ' ');
  if (DisplayWidth(flat) <= max || max == 0) {
    return max == 0 ? std::string() : flat;
  }
  // Keep max - 1 code points, then the ellipsis.
  std::size_t points = 0;
  std::size_t cut = 0;
  while (cut < flat.size()) {
    if (!IsContinuationByte(flat[cut])) {
      if (points == max - 1) {
        break;
      }
      ++points;
    }
    ++cut;
  }
  while (cut > 0 && flat[cut - 1] == ' ') {
    --cut;
  }
  return flat.substr(0, cut) + "…";
}

std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(headers.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], DisplayWidth(row[i]));
    }
  };
  measure(headers);
  for (const auto& row : rows) {
    measure(row);
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < width.size(); ++i) {
      std::string cell = i < row.size() ? row[i] : std::string();
      line += cell;
      if (i + 1 < width.size()) {
        line += std::string(width[i] - DisplayWidth(cell) + 2, ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  };
  emit(headers);
  for (const auto& row : rows) {
    emit(row);
  }
  return out;
}

}  // namespace airlock::cli
