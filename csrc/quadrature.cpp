// Quadrature rules of docs/methods.md §1. Gauss-Legendre is computed here by Newton's
// method on the three-term Legendre recurrence (O(n^2), accurate to ~1e-15 for
// n <= 1024), so the extension needs no LAPACK.
#include "quadrature.hpp"

#include <cmath>
#include <stdexcept>

namespace pathattr {

namespace {

constexpr double kPi = 3.14159265358979323846;

enum class Method { Left, Right, Middle, Trapezoid, GaussLegendre };

bool parse_method(const std::string& s, Method* m) {
    if (s == "riemann_left") { *m = Method::Left; return true; }
    if (s == "riemann_right") { *m = Method::Right; return true; }
    if (s == "riemann_middle") { *m = Method::Middle; return true; }
    if (s == "riemann_trapezoid") { *m = Method::Trapezoid; return true; }
    if (s == "gausslegendre") { *m = Method::GaussLegendre; return true; }
    return false;
}

// P_n(x) and P_{n-1}(x) by the recurrence j P_j = (2j-1) x P_{j-1} - (j-1) P_{j-2}.
void legendre_pair(int64_t n, double x, double* pn, double* pn1) {
    double p0 = 1.0, p1 = x;
    for (int64_t j = 2; j <= n; ++j) {
        const double dj = static_cast<double>(j);
        const double p2 = ((2.0 * dj - 1.0) * x * p1 - (dj - 1.0) * p0) / dj;
        p0 = p1;
        p1 = p2;
    }
    *pn = p1;
    *pn1 = p0;
}

}  // namespace

const char* quadrature_method_names() {
    return "'riemann_left', 'riemann_right', 'riemann_middle', 'riemann_trapezoid', "
           "'gausslegendre'";
}

void check_quadrature_args(const std::string& method, int64_t n) {
    Method m;
    if (!parse_method(method, &m)) {
        throw std::invalid_argument("method: expected one of " +
                                    std::string(quadrature_method_names()) + ", got '" +
                                    method + "'");
    }
    if (n < 1) {
        throw std::invalid_argument("n: expected an integer >= 1, got " + std::to_string(n));
    }
    if (m == Method::Trapezoid && n < 2) {
        throw std::invalid_argument(
            "n: 'riemann_trapezoid' needs n >= 2 (both end points), got " + std::to_string(n));
    }
}

void gauss_legendre(int64_t n, double* nodes, double* weights) {
    if (n == 1) {  // the recurrence below assumes P_{n-1} exists with n >= 1; n = 1 is trivial
        nodes[0] = 0.0;
        weights[0] = 2.0;
        return;
    }
    // Nodes are symmetric about 0: find the non-negative half, x_k descending from ~1.
    const int64_t half = (n + 1) / 2;
    const double dn = static_cast<double>(n);
    for (int64_t k = 0; k < half; ++k) {
        // Tricomi-type guess; close enough that Newton converges to the k-th root.
        double x = std::cos(kPi * (static_cast<double>(k) + 0.75) / (dn + 0.5));
        double pn = 0.0, pn1 = 0.0, dp = 0.0;
        for (int it = 0; it < 100; ++it) {
            legendre_pair(n, x, &pn, &pn1);
            // P_n'(x) = n (x P_n - P_{n-1}) / (x^2 - 1); (x-1)(x+1) avoids cancellation near 1.
            dp = dn * (x * pn - pn1) / ((x - 1.0) * (x + 1.0));
            const double dx = pn / dp;
            x -= dx;
            if (std::fabs(dx) <= 1e-16 * std::fabs(x) + 1e-300) break;
        }
        const bool middle = (2 * k + 1 == n);  // odd n: the root at 0 is exact
        if (middle) x = 0.0;
        // The weight uses the derivative at the converged node.
        legendre_pair(n, x, &pn, &pn1);
        dp = dn * (x * pn - pn1) / ((x - 1.0) * (x + 1.0));
        const double w = 2.0 / ((1.0 - x) * (1.0 + x) * dp * dp);
        nodes[n - 1 - k] = x;
        weights[n - 1 - k] = w;
        nodes[k] = -x;
        weights[k] = w;
    }
}

QuadratureRule quadrature(const std::string& method, int64_t n) {
    check_quadrature_args(method, n);
    Method m;
    parse_method(method, &m);
    QuadratureRule r;
    r.alphas.resize(static_cast<size_t>(n));
    r.weights.resize(static_cast<size_t>(n));
    const double dn = static_cast<double>(n);
    switch (m) {
        case Method::Left:
            for (int64_t k = 0; k < n; ++k) { r.alphas[k] = static_cast<double>(k) / dn; r.weights[k] = 1.0 / dn; }
            break;
        case Method::Right:
            for (int64_t k = 0; k < n; ++k) { r.alphas[k] = static_cast<double>(k + 1) / dn; r.weights[k] = 1.0 / dn; }
            break;
        case Method::Middle:
            for (int64_t k = 0; k < n; ++k) { r.alphas[k] = (static_cast<double>(k) + 0.5) / dn; r.weights[k] = 1.0 / dn; }
            break;
        case Method::Trapezoid: {
            // True trapezoid (weights sum to 1), not Captum's 1/n variant; see docs/methods.md §1.
            const double h = static_cast<double>(n - 1);
            for (int64_t k = 0; k < n; ++k) { r.alphas[k] = static_cast<double>(k) / h; r.weights[k] = 1.0 / h; }
            r.weights[0] *= 0.5;
            r.weights[n - 1] *= 0.5;
            break;
        }
        case Method::GaussLegendre: {
            gauss_legendre(n, r.alphas.data(), r.weights.data());
            for (int64_t k = 0; k < n; ++k) {
                r.alphas[k] = (1.0 + r.alphas[k]) / 2.0;
                r.weights[k] = r.weights[k] / 2.0;
            }
            break;
        }
    }
    return r;
}

}  // namespace pathattr
