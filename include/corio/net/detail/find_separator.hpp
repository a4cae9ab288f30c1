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

// Whether the k bytes before candidate end q are sep's first k.
inline bool sep_ends_at(const char* q, std::string_view sep, std::size_t k) noexcept {
  const char* start = q - k;
  std::size_t i = 0;
  while (i < k && start[i] == sep[i]) ++i;
  return i == k;
}

// Where sep (non-empty) first starts in buf at or after `from`, or npos. The candidates are the positions
// of sep's last byte, found 16 bytes at a time (SSE2, on x86-64 always there) or by memchr, and the bytes
// before each are compared in place: a request head has few candidates, where string_view::find calls
// memchr and memcmp once per "\r".
inline std::size_t find_separator(std::string_view buf, std::string_view sep, std::size_t from) noexcept {
  const std::size_t k = sep.size() - 1;
  if (buf.size() < sep.size() || from > buf.size() - sep.size()) return std::string_view::npos;
  const char* const base = buf.data();
  const char* p = base + from + k;
  const char* const end = base + buf.size();
  const char last = sep[k];
#if defined(__SSE2__)
  const __m128i want = _mm_set1_epi8(last);
  for (; end - p >= 16; p += 16) {
    auto mask = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), want)));
    for (; mask != 0; mask &= mask - 1) {
      const char* q = p + __builtin_ctz(mask);
      if (sep_ends_at(q, sep, k)) return static_cast<std::size_t>(q - k - base);
    }
  }
  if (p < end && end - base >= 16) {
    // The last 16 bytes of the buffer, less those already looked at (the separator usually ends here).
    const char* last16 = end - 16;
    auto mask = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(last16)), want)));
    mask &= ~0u << (p - last16);
    for (; mask != 0; mask &= mask - 1) {
      const char* q = last16 + __builtin_ctz(mask);
      if (sep_ends_at(q, sep, k)) return static_cast<std::size_t>(q - k - base);
    }
    return std::string_view::npos;
  }
#endif
  while (p < end) {
    auto* q = static_cast<const char*>(std::memchr(p, last, static_cast<std::size_t>(end - p)));
    if (!q) break;
    if (sep_ends_at(q, sep, k)) return static_cast<std::size_t>(q - k - base);
    p = q + 1;
  }
  return std::string_view::npos;
}

}  // namespace corio::detail
