// Where corio reports what it cannot throw: exceptions nobody retrieved, coroutines never awaited, slow
// callbacks (debug mode), tasks still pending when a loop closes. Default: one line on stderr.
#pragma once

#include <functional>
#include <string_view>

namespace corio {

// Replaces the log sink for the whole process; an empty function restores the default (stderr).
// Returns the previous sink. A sink that throws loses nothing and stops nothing: the message goes to stderr
// instead, with what the sink threw (corio logs where it cannot throw: a failed callback, a server's
// accept loop). Not thread-safe against concurrent logging: set it at start-up or in tests.
std::function<void(std::string_view)> set_log_handler(std::function<void(std::string_view)> handler);

namespace detail {
void log(std::string_view message) noexcept;
}  // namespace detail

}  // namespace corio
