// readuntil's search: where a separator first starts in a buffer. Private to corio (namespace detail);
// in a header so that a test can compare it with std::string_view::find on every alignment.
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace corio::detail {

// Where sep (non-empty) first starts in buf at or after `from`, or npos. Candidate starts are found 16 at a
// time (SSE2, on x86-64 always there): a start qualifies when both sep's first and its last byte are in
// place, so in text a candidate is nearly always a match ("\r\n\r\n" in a request head: where a search for
// the last byte alone also stops at every line's "\n"), and only its middle bytes are compared after.
// Buffers shorter than 16 starts, and other targets, take memchr for the first byte.
inline std::size_t find_separator(std::string_view buf, std::string_view sep, std::size_t from) noexcept {
  const std::size_t n = buf.size();
  const std::size_t k = sep.size() - 1;  // the last byte's offset in a match
  if (n < sep.size() || from > n - sep.size()) return std::string_view::npos;
  const char* const base = buf.data();
  const char* const s = sep.data();
  // A match at c, given that its first and last bytes are in place. (A loop, not memcmp: the middle is a
  // few bytes or none, where a call costs more than the comparison.)
  auto middle_matches = [&](std::size_t c) {
    for (std::size_t i = 1; i < k; ++i)
      if (base[c + i] != s[i]) return false;
    return true;
  };
#if defined(__SSE2__)
  if (n - from >= 16 + k) {
    const __m128i first = _mm_set1_epi8(s[0]);
    const __m128i last = _mm_set1_epi8(s[k]);
    // The candidate starts [c, c + 16): bit i set when c + i holds sep's first byte and c + i + k its last.
    auto starts = [&](std::size_t c) {
      const __m128i a = _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + c)), first);
      const __m128i b = _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + c + k)), last);
      return static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(a, b)));
    };
    // The first match among the candidates of `mask` (bit i: start c + i), or npos.
    auto first_match = [&](std::size_t c, unsigned mask) {
      for (; mask != 0; mask &= mask - 1) {
        const std::size_t at = c + static_cast<std::size_t>(__builtin_ctz(mask));
        if (middle_matches(at)) return at;
      }
      return std::string_view::npos;
    };
    std::size_t c = from;
    for (; c + 16 + k <= n; c += 16)
      if (std::size_t at = first_match(c, starts(c)); at != std::string_view::npos) return at;
    if (c + k >= n) return std::string_view::npos;
    // The last 16 starts of the buffer (t >= from, as n - from >= 16 + k), less those already looked at.
    const std::size_t t = n - k - 16;
    return first_match(t, starts(t) & (~0u << (c - t)));
  }
#endif
  const std::size_t last_start = n - sep.size();
  for (std::size_t c = from; c <= last_start; ++c) {
    const void* p = std::memchr(base + c, s[0], last_start - c + 1);
    if (!p) break;
    c = static_cast<std::size_t>(static_cast<const char*>(p) - base);
    if (base[c + k] == s[k] && middle_matches(c)) return c;
  }
  return std::string_view::npos;
}

}  // namespace corio::detail
