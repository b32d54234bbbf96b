#pragma once
// Aligned text tables for the commands that list things (models, versions, deployments,
// gateways), in the manner of `kubectl get` and `docker ps`.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::cli {

// A header row and rows, each column as wide as its widest cell (counted in UTF-8 code points),
// two spaces apart; the last column is not padded and no line ends in spaces. Rows shorter than
// the header are padded with empty cells. Every line ends with '\n'.
std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

// text cut to at most max code points, ending in "…" when cut; newlines become spaces.
std::string Shorten(std::string_view text, std::size_t max);

// The number of UTF-8 code points in text.
std::size_t DisplayWidth(std::string_view text);

}  // namespace airlock::cli
