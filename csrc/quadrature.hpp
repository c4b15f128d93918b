// Quadrature rules on [0, 1] for path integrals (docs/methods.md §1).
// Plain C++17, no torch: the Python layer turns the vectors into numpy arrays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pathattr {

struct QuadratureRule {
    std::vector<double> alphas;   // ascending, in [0, 1]
    std::vector<double> weights;  // same length; sums to 1 (up to rounding)
};

// The names accepted by quadrature(), comma separated, for error messages.
const char* quadrature_method_names();

// Throws std::invalid_argument (ValueError in Python) on an unknown method,
// n < 1, or n < 2 for "riemann_trapezoid".
void check_quadrature_args(const std::string& method, int64_t n);

// Rule (alphas, weights) with n points. Arguments must have passed
// check_quadrature_args; it is re-checked here so C++ callers are safe too.
QuadratureRule quadrature(const std::string& method, int64_t n);

// n-point Gauss-Legendre nodes (ascending) and weights on [-1, 1].
void gauss_legendre(int64_t n, double* nodes, double* weights);

}  // namespace pathattr
