// Error-controlled refinement in rounds (docs/methods.md §14): per input, a set of
// intervals of [0, U], each carrying five nested samples (its ends, quarter points and
// midpoint). From per-interval error indicators the scheduler marks, per input, the
// intervals that carry most of the error (bulk marking: the fewest largest whose squared
// indicators reach a share theta2 of the input's total) and bisects them. Every old
// sample stays in use: a child reuses three of its parent's five points and needs two new
// ones, so a bisection costs four evaluations. Plain C++17, no torch.
#pragma once

#include <cstdint>
#include <vector>

namespace pathattr {

constexpr int kPointsPerInterval = 5;

// The interval table of every input, as parallel arrays (K intervals).
struct IntervalTable {
    std::vector<double> lo;        // left end
    std::vector<double> width;     // b - a
    std::vector<int64_t> input;    // which input the interval belongs to
    std::vector<int64_t> points;   // (K, 5) indices into the sample store: a, a+h/4, a+h/2, a+3h/4, b
};

// New samples to evaluate: their alphas, their inputs and their (consecutive) store indices
// starting at the store's current size.
struct NewPoints {
    std::vector<double> alpha;
    std::vector<int64_t> input;
};

// The first round: K0 equal intervals on [0, upper[b]] for each of B inputs, 4*K0 + 1
// samples per input, numbered input by input from 0. Throws std::invalid_argument naming
// the argument (K0 < 1, an upper end not in (0, 1]).
void initial_grid(const double* upper, int64_t B, int64_t K0, IntervalTable& table, NewPoints& points);

struct RefineOptions {
    double theta2 = 0.5;       // share of an input's squared indicator that the marked intervals cover
    double min_width = 0x1p-40;  // narrower intervals are never bisected (no new information in float64)
};

// One round. eta (K,) >= 0 the intervals' indicators; active (B,) whether each input wants
// more samples; budget (B,) how many bisections each input may still afford (4 samples each).
// Replaces `table` by the refined one, fills `points` (indices from n_stored on) and
// `marked` (B,) with the bisections made per input. Throws std::invalid_argument on
// negative or non-finite indicators, or inputs out of range.
void refine_round(IntervalTable& table, const double* eta, int64_t B, const uint8_t* active,
                  const int64_t* budget, int64_t n_stored, const RefineOptions& opt, NewPoints& points,
                  int64_t* marked);

// Per-sample weights of the composite rule over the current table, for P stored samples:
// composite Simpson on the two halves (h/12 * [1 4 2 4 1]) where smooth[k], else the
// composite trapezoid on the quarters (h/8 * [1 2 2 2 1]). Ends shared by neighbours add up.
void composite_weights(const IntervalTable& table, const uint8_t* smooth, int64_t P, double* weights);

}  // namespace pathattr
