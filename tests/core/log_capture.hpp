// Test helper: captures corio's log lines for the lifetime of the object, then restores the previous sink.
#pragma once

#include <corio/core/log.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corio_test {

class LogCapture {
 public:
  LogCapture() {
    old_ = corio::set_log_handler([this](std::string_view m) { lines_.emplace_back(m); });
  }
  ~LogCapture() { corio::set_log_handler(std::move(old_)); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  const std::vector<std::string>& lines() const { return lines_; }
  // Every captured line, one per line.
  std::string text() const {
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }
  bool contains(std::string_view needle) const { return text().find(needle) != std::string::npos; }
  // How many lines contain `needle`.
  int count(std::string_view needle) const {
    int n = 0;
    for (const auto& l : lines_) n += l.find(needle) != std::string::npos;
    return n;
  }

 private:
  std::function<void(std::string_view)> old_;
  std::vector<std::string> lines_;
};

}  // namespace corio_test
