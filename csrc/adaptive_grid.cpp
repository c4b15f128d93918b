// Adaptive IDG grid, docs/methods.md §2.1. Every floating-point expression here has a
// twin, in the same operation order, in python/pathattr/reference/scheduler.py:
// change both together or the bit-for-bit test fails. Built with -ffp-contract=off
// so no FMA changes the rounding.
#include "adaptive_grid.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace pathattr {

Growth parse_growth(const std::string& s) {
    if (s == "abs") return Growth::Abs;
    if (s == "positive") return Growth::Positive;
    throw std::invalid_argument("growth: expected 'abs' or 'positive', got '" + s + "'");
}

Placement parse_placement(const std::string& s) {
    if (s == "midpoint") return Placement::Midpoint;
    if (s == "left") return Placement::Left;
    throw std::invalid_argument("placement: expected 'midpoint' or 'left', got '" + s + "'");
}

void check_grid_options(const GridOptions& opt, int64_t N) {
    if (opt.M < 1) {
        throw std::invalid_argument("M: expected an integer >= 1, got " + std::to_string(opt.M));
    }
    if (opt.floor < 0) {
        throw std::invalid_argument("floor: expected an integer >= 0, got " +
                                    std::to_string(opt.floor));
    }
    if (!std::isfinite(opt.eps) || opt.eps < 0.0) {
        throw std::invalid_argument("eps: expected a finite number >= 0, got " +
                                    std::to_string(opt.eps));
    }
    if (N < 1) {
        throw std::invalid_argument("curves: expected at least 2 columns (N+1 probe points), got " +
                                    std::to_string(N + 1));
    }
    // M < floor*N, written as a division so a huge floor cannot overflow int64.
    if (opt.floor > 0 && opt.M / opt.floor < N) {
        throw std::invalid_argument("M: must be >= floor*N so every interval gets its floor; got M=" +
                                    std::to_string(opt.M) + ", floor=" + std::to_string(opt.floor) +
                                    ", N=" + std::to_string(N));
    }
}

void check_curves_finite(const double* curves, int64_t B, int64_t N) {
    const int64_t cols = N + 1;
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t c = 0; c < cols; ++c) {
            if (!std::isfinite(curves[b * cols + c])) {
                throw std::invalid_argument("curves: expected finite values; row " + std::to_string(b) +
                                            " has a NaN or infinity at column " + std::to_string(c));
            }
        }
    }
}

namespace {

// Interval growth a_j for the curve L multiplied by s (s = 1 normally; a power of two
// when the differences overflow, which scales exactly except in the subnormal range).
double growth_sum(const double* L, int64_t N, Growth growth, double s, std::vector<double>& a) {
    double S = 0.0;
    for (int64_t j = 0; j < N; ++j) {
        const double d = L[j + 1] * s - L[j] * s;
        a[j] = (growth == Growth::Abs) ? std::fabs(d) : (d > 0.0 ? d : 0.0);
        S += a[j];  // sequential, j = 0..N-1, as the reference does
    }
    return S;
}

// Replace every a_j by round(a_j / 2^(e - kSnapBits)), an integer count of a quantum
// that is a power of two (ldexp scales exactly) with S < 2^e, and return their sum.
// Why: the probe values carry rounding noise that depends on how the model's forward
// was batched, and piecewise-linear models give runs of intervals whose growth is
// equal in exact arithmetic; without the snap that noise decides largest-remainder
// ties, so a different chunk size could move a sample. Snapped, equal growth is
// exactly equal and the tie goes to the lower j. Integers below 2^31 never overflow.
constexpr int kSnapBits = 30;

double snap_growth(std::vector<double>& a, int64_t N, double S) {
    int e = 0;
    std::frexp(S, &e);  // S = m * 2^e, m in [0.5, 1)
    double total = 0.0;
    for (int64_t j = 0; j < N; ++j) {
        a[j] = std::nearbyint(std::ldexp(a[j], kSnapBits - e));
        total += a[j];
    }
    return total;
}

int bit_length(int64_t v) {
    int bits = 0;
    while (v > 0) { ++bits; v >>= 1; }
    return bits;
}

}  // namespace

void adaptive_grid_row(const double* L, int64_t N, const GridOptions& opt, double* alphas,
                       double* weights, int64_t* counts, std::vector<double>& share,
                       std::vector<double>& rem, std::vector<int64_t>& order) {
    share.resize(static_cast<size_t>(N));
    rem.resize(static_cast<size_t>(N));
    order.resize(static_cast<size_t>(N));

    // 1-2. Growth per interval and its total.
    double S = growth_sum(L, N, opt.growth, 1.0, share);
    double maxabs = 0.0;
    for (int64_t j = 0; j <= N; ++j) maxabs = std::max(maxabs, std::fabs(L[j]));
    if (S <= opt.eps * std::max(1.0, maxabs)) {
        // Flat curve: no direction to follow, spread evenly (avoids 0/0).
        for (int64_t j = 0; j < N; ++j) share[j] = 1.0 / static_cast<double>(N);
    } else {
        if (!std::isfinite(S)) {
            // Finite L but L_{j+1} - L_j (or their sum) overflowed: rescale by a power
            // of two small enough that sum |dL| <= 2N max|L| * s < DBL_MAX.
            const double s = std::ldexp(1.0, -(bit_length(N) + 2));
            S = growth_sum(L, N, opt.growth, s, share);
        }
        S = snap_growth(share, N, S);
        for (int64_t j = 0; j < N; ++j) share[j] = (S > 0.0) ? share[j] / S : 1.0 / static_cast<double>(N);
    }

    // 3. Largest-remainder apportionment of R = M - floor*N.
    const int64_t R = opt.M - opt.floor * N;
    const double dR = static_cast<double>(R);
    int64_t assigned = 0;
    for (int64_t j = 0; j < N; ++j) {
        const double x = dR * share[j];
        const double b = std::floor(x);
        counts[j] = static_cast<int64_t>(b);
        rem[j] = x - b;
        assigned += counts[j];
    }
    int64_t leftover = R - assigned;
    for (int64_t j = 0; j < N; ++j) order[j] = j;
    // Largest remainder first; stable, so equal remainders keep the lower j first.
    std::stable_sort(order.begin(), order.end(),
                     [&rem](int64_t p, int64_t q) { return rem[p] > rem[q]; });
    // Guards for rounding that over- or under-shoots by more than the usual 0..N-1.
    // Unreachable unless R*N approaches 2^53, but they keep sum(counts) == M always.
    while (leftover < 0) {
        // Take back from the smallest remainders first (reverse of the order).
        for (int64_t i = N - 1; i >= 0 && leftover < 0; --i) {
            const int64_t j = order[i];
            if (counts[j] > 0) { --counts[j]; ++leftover; }
        }
    }
    while (leftover > N) {
        for (int64_t j = 0; j < N; ++j) ++counts[j];
        leftover -= N;
    }
    for (int64_t i = 0; i < leftover; ++i) ++counts[order[i]];
    for (int64_t j = 0; j < N; ++j) counts[j] += opt.floor;

    // 4-5. Samples inside each interval, ascending in j then t, so ascending overall.
    const double o = (opt.placement == Placement::Midpoint) ? 0.5 : 0.0;
    const double dN = static_cast<double>(N);
    int64_t k = 0;
    for (int64_t j = 0; j < N; ++j) {
        const int64_t nj = counts[j];
        if (nj == 0) continue;
        const double w = 1.0 / static_cast<double>(N * nj);
        const double dj = static_cast<double>(j);
        const double dnj = static_cast<double>(nj);
        for (int64_t t = 0; t < nj; ++t) {
            alphas[k] = (dj + (static_cast<double>(t) + o) / dnj) / dN;
            weights[k] = w;
            ++k;
        }
    }
}

void adaptive_grid_batch(const double* curves, int64_t B, int64_t N, const GridOptions& opt,
                         double* alphas, double* weights, int64_t* counts) {
    check_grid_options(opt, N);
    check_curves_finite(curves, B, N);
    std::vector<double> share, rem;
    std::vector<int64_t> order;
    for (int64_t b = 0; b < B; ++b) {
        adaptive_grid_row(curves + b * (N + 1), N, opt, alphas + b * opt.M, weights + b * opt.M,
                          counts + b * N, share, rem, order);
    }
}

}  // namespace pathattr
