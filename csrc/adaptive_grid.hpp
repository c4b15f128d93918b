// Adaptive IDG sampling grid (docs/methods.md §2.1): from a probe curve L_0..L_N per
// example, exactly M alphas and weights, concentrated where the logit moves.
// Plain C++17, no torch. The arithmetic follows a fixed operation order so that the
// pure-Python reference (pathattr.reference.scheduler) agrees bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pathattr {

enum class Growth { Abs, Positive };
enum class Placement { Midpoint, Left };

struct GridOptions {
    int64_t M = 0;        // samples per example
    Growth growth = Growth::Abs;
    Placement placement = Placement::Midpoint;
    int64_t floor = 1;    // samples every interval gets before apportioning
    double eps = 1e-12;   // flat-curve threshold, relative to max(1, max|L|)
};

// Parse the option strings; throw std::invalid_argument naming the argument.
Growth parse_growth(const std::string& s);
Placement parse_placement(const std::string& s);

// Check M, floor, eps against N = (number of curve points) - 1; throws
// std::invalid_argument naming the argument.
void check_grid_options(const GridOptions& opt, int64_t N);

// Throws std::invalid_argument naming the first row with a NaN or infinity.
void check_curves_finite(const double* curves, int64_t B, int64_t N);

// One example. L has N+1 points; alphas and weights have M entries, counts N.
// Scratch vectors are passed in so a batch loop allocates once.
void adaptive_grid_row(const double* L, int64_t N, const GridOptions& opt, double* alphas,
                       double* weights, int64_t* counts, std::vector<double>& share,
                       std::vector<double>& rem, std::vector<int64_t>& order);

// B examples, row-major curves (B, N+1); outputs (B, M), (B, M), (B, N).
// Validates the options and the curves first, then fills every row.
void adaptive_grid_batch(const double* curves, int64_t B, int64_t N, const GridOptions& opt,
                         double* alphas, double* weights, int64_t* counts);

}  // namespace pathattr
