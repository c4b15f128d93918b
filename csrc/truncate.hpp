// Left-IG truncation point (docs/methods.md §3): from a probe curve L_0..L_N per example
// (L_j = F(p(j/N))), the alpha* where the output first reaches a threshold tau.
// Plain C++17, no torch. Every floating-point expression has a twin, in the same
// operation order, in python/pathattr/reference/truncate.py (bit-for-bit test).
#pragma once

#include <cstdint>
#include <string>

namespace pathattr {

enum class Threshold { Baseline, Max };

// Throws std::invalid_argument naming the argument.
Threshold parse_threshold(const std::string& s);
void check_truncate_options(double r, int64_t N);

// One example, L has N+1 points. Writes alpha* in (0, 1] and whether the whole path
// is used (F(x) <= F(x'), or the curve never crosses tau upward).
void truncate_row(const double* L, int64_t N, double r, Threshold threshold, double* alpha_star,
                  bool* whole);

// B examples, row-major curves (B, N+1); validates options and finiteness first.
void truncate_batch(const double* curves, int64_t B, int64_t N, double r, Threshold threshold,
                    double* alpha_star, bool* whole);

}  // namespace pathattr
