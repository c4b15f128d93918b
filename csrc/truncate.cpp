// Left-IG truncation, docs/methods.md §3. Twin: python/pathattr/reference/truncate.py.
// Built with -ffp-contract=off (setup.py) so no FMA changes the rounding.
//
// Definition (per example, probe points alpha_j = j/N):
//   h_j = L_j / 2 (exact for normal numbers; keeps L_N - L_0 and tau finite for any
//   finite curve, and the halving cancels in t below, so results equal the unscaled
//   formula wherever that does not overflow).
//   "baseline": tau_h = h_0 + r (h_N - h_0); "max": tau_h = r * max_j h_j.
//   whole path if L_N <= L_0 (F(x) <= F(x')); else alpha* = (j - 1 + t) / N for the
//   first j in 1..N with h_{j-1} < tau_h <= h_j (an upward crossing), where
//   t = (tau_h - h_{j-1}) / (h_j - h_{j-1}) in (0, 1] is the linear interpolation of
//   the curve between the two probe points. No upward crossing: whole path.
#include "truncate.hpp"

#include <cmath>
#include <stdexcept>

#include "adaptive_grid.hpp"  // check_curves_finite

namespace pathattr {

Threshold parse_threshold(const std::string& s) {
    if (s == "baseline") return Threshold::Baseline;
    if (s == "max") return Threshold::Max;
    throw std::invalid_argument("threshold: expected 'baseline' or 'max', got '" + s + "'");
}

void check_truncate_options(double r, int64_t N) {
    if (!(r > 0.0 && r <= 1.0)) {
        throw std::invalid_argument("r: expected a number in (0, 1], got " + std::to_string(r));
    }
    if (N < 1) {
        throw std::invalid_argument("curves: expected at least 2 columns (N+1 probe points), got " +
                                    std::to_string(N + 1));
    }
}

void truncate_row(const double* L, int64_t N, double r, Threshold threshold, double* alpha_star,
                  bool* whole) {
    *alpha_star = 1.0;
    *whole = true;
    if (L[N] <= L[0]) return;
    double tau;
    if (threshold == Threshold::Baseline) {
        const double h0 = L[0] * 0.5;
        tau = h0 + r * (L[N] * 0.5 - h0);
    } else {
        double m = L[0] * 0.5;
        for (int64_t j = 1; j <= N; ++j) {
            const double h = L[j] * 0.5;
            if (h > m) m = h;
        }
        tau = r * m;
    }
    for (int64_t j = 1; j <= N; ++j) {
        const double lo = L[j - 1] * 0.5;
        const double hi = L[j] * 0.5;
        if (lo < tau && tau <= hi) {
            const double t = (tau - lo) / (hi - lo);
            *alpha_star = (static_cast<double>(j - 1) + t) / static_cast<double>(N);
            *whole = false;
            return;
        }
    }
}

void truncate_batch(const double* curves, int64_t B, int64_t N, double r, Threshold threshold,
                    double* alpha_star, bool* whole) {
    check_truncate_options(r, N);
    check_curves_finite(curves, B, N);
    for (int64_t b = 0; b < B; ++b) {
        truncate_row(curves + b * (N + 1), N, r, threshold, alpha_star + b, whole + b);
    }
}

}  // namespace pathattr
