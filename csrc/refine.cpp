// Error-controlled refinement in rounds: see refine.hpp and docs/methods.md §14.
#include "refine.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace pathattr {

void initial_grid(const double* upper, int64_t B, int64_t K0, IntervalTable& table, NewPoints& points) {
    if (K0 < 1) {
        throw std::invalid_argument("intervals: expected >= 1 initial interval per input, got " + std::to_string(K0));
    }
    for (int64_t b = 0; b < B; ++b) {
        if (!(upper[b] > 0.0 && upper[b] <= 1.0)) {
            throw std::invalid_argument("upper: expected path ends in (0, 1], got " + std::to_string(upper[b]) +
                                        " for input " + std::to_string(b));
        }
    }
    const int64_t per = 4 * K0 + 1;
    table = IntervalTable{};
    points = NewPoints{};
    table.lo.reserve(B * K0);
    points.alpha.reserve(B * per);
    for (int64_t b = 0; b < B; ++b) {
        const double h = upper[b] / static_cast<double>(K0);
        const int64_t first = b * per;
        for (int64_t j = 0; j < per; ++j) {
            // j/(4 K0) * U exactly at the ends: alpha 0 is the baseline, alpha U the path's end.
            points.alpha.push_back(j == per - 1 ? upper[b] : upper[b] * (static_cast<double>(j) / (4.0 * K0)));
            points.input.push_back(b);
        }
        for (int64_t k = 0; k < K0; ++k) {
            table.lo.push_back(points.alpha[first + 4 * k]);
            table.width.push_back(k == K0 - 1 ? upper[b] - points.alpha[first + 4 * k] : h);
            table.input.push_back(b);
            for (int64_t q = 0; q < kPointsPerInterval; ++q) {
                table.points.push_back(first + 4 * k + q);
            }
        }
    }
}

void refine_round(IntervalTable& table, const double* eta, int64_t B, const uint8_t* active,
                  const int64_t* budget, int64_t n_stored, const RefineOptions& opt, NewPoints& points,
                  int64_t* marked) {
    const int64_t K = static_cast<int64_t>(table.lo.size());
    std::vector<std::vector<int64_t>> per_input(static_cast<size_t>(B));
    for (int64_t k = 0; k < K; ++k) {
        if (!(eta[k] >= 0.0) || !std::isfinite(eta[k])) {
            throw std::invalid_argument("eta: expected finite indicators >= 0, got " + std::to_string(eta[k]) +
                                        " for interval " + std::to_string(k));
        }
        const int64_t b = table.input[k];
        if (b < 0 || b >= B) {
            throw std::invalid_argument("input: interval " + std::to_string(k) + " names input " +
                                        std::to_string(b) + " of " + std::to_string(B));
        }
        per_input[b].push_back(k);
    }
    std::vector<uint8_t> split(static_cast<size_t>(K), 0);
    for (int64_t b = 0; b < B; ++b) {
        marked[b] = 0;
        auto& ks = per_input[b];
        if (!active[b] || budget[b] <= 0 || ks.empty()) {
            continue;
        }
        // Largest indicators first (ties: leftmost first, so the result is deterministic).
        std::stable_sort(ks.begin(), ks.end(), [&](int64_t i, int64_t j) { return eta[i] > eta[j]; });
        double total = 0.0;
        for (int64_t k : ks) total += eta[k] * eta[k];
        if (!(total > 0.0)) {
            continue;  // nothing to refine where no interval reports an error
        }
        double covered = 0.0;
        for (int64_t k : ks) {
            if (covered >= opt.theta2 * total || marked[b] >= budget[b]) break;
            if (eta[k] <= 0.0) break;
            if (table.width[k] < opt.min_width) continue;
            split[k] = 1;
            ++marked[b];
            covered += eta[k] * eta[k];
        }
    }
    IntervalTable next;
    points = NewPoints{};
    int64_t store = n_stored;
    for (int64_t k = 0; k < K; ++k) {
        const int64_t* p = &table.points[static_cast<size_t>(k * kPointsPerInterval)];
        if (!split[k]) {
            next.lo.push_back(table.lo[k]);
            next.width.push_back(table.width[k]);
            next.input.push_back(table.input[k]);
            next.points.insert(next.points.end(), p, p + kPointsPerInterval);
            continue;
        }
        const double a = table.lo[k], h = table.width[k];
        const int64_t b = table.input[k];
        int64_t q[4];
        for (int j = 0; j < 4; ++j) {  // the eighth points a + (2j + 1) h / 8
            points.alpha.push_back(a + h * (static_cast<double>(2 * j + 1) / 8.0));
            points.input.push_back(b);
            q[j] = store++;
        }
        const double half = h * 0.5;
        const int64_t left[kPointsPerInterval] = {p[0], q[0], p[1], q[1], p[2]};
        const int64_t right[kPointsPerInterval] = {p[2], q[2], p[3], q[3], p[4]};
        next.lo.push_back(a);
        next.width.push_back(half);
        next.input.push_back(b);
        next.points.insert(next.points.end(), left, left + kPointsPerInterval);
        next.lo.push_back(a + half);
        next.width.push_back(h - half);
        next.input.push_back(b);
        next.points.insert(next.points.end(), right, right + kPointsPerInterval);
    }
    table = std::move(next);
}

void composite_weights(const IntervalTable& table, const uint8_t* smooth, int64_t P, double* weights) {
    static const double simpson[kPointsPerInterval] = {1.0 / 12, 4.0 / 12, 2.0 / 12, 4.0 / 12, 1.0 / 12};
    static const double trapezoid[kPointsPerInterval] = {1.0 / 8, 2.0 / 8, 2.0 / 8, 2.0 / 8, 1.0 / 8};
    std::fill(weights, weights + P, 0.0);
    const int64_t K = static_cast<int64_t>(table.lo.size());
    for (int64_t k = 0; k < K; ++k) {
        const double* c = smooth[k] ? simpson : trapezoid;
        for (int q = 0; q < kPointsPerInterval; ++q) {
            const int64_t i = table.points[static_cast<size_t>(k * kPointsPerInterval + q)];
            if (i < 0 || i >= P) {
                throw std::invalid_argument("points: sample index " + std::to_string(i) + " outside the " +
                                            std::to_string(P) + " stored samples");
            }
            weights[i] += table.width[k] * c[q];
        }
    }
}

}  // namespace pathattr
