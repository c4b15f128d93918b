// pathattr._scheduler: numpy in, numpy out, GIL released while computing.
// Inputs are copied or viewed as C-contiguous float64 before the GIL is dropped, and
// outputs are allocated while it is held, so the worker code touches no Python objects.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "adaptive_grid.hpp"
#include "quadrature.hpp"
#include "refine.hpp"
#include "truncate.hpp"

namespace py = pybind11;

namespace {

using CurveArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Probe curves (B, N+1) as a C-contiguous float64 array, or a ValueError naming `curves`.
CurveArray ensure_curves(const py::object& curves_obj) {
    CurveArray curves = CurveArray::ensure(curves_obj);
    if (!curves) {
        throw py::value_error("curves: expected a 2-D array of real numbers (B, N+1)");
    }
    if (curves.ndim() != 2) {
        throw py::value_error("curves: expected a 2-D array (B, N+1), got " +
                              std::to_string(curves.ndim()) + " dimension(s)");
    }
    return curves;
}

py::tuple py_quadrature(const std::string& method, int64_t n) {
    pathattr::check_quadrature_args(method, n);  // ValueError before allocating
    pathattr::QuadratureRule rule;
    {
        py::gil_scoped_release release;
        rule = pathattr::quadrature(method, n);
    }
    py::array_t<double> alphas(static_cast<py::ssize_t>(n));
    py::array_t<double> weights(static_cast<py::ssize_t>(n));
    std::memcpy(alphas.mutable_data(), rule.alphas.data(), sizeof(double) * rule.alphas.size());
    std::memcpy(weights.mutable_data(), rule.weights.data(), sizeof(double) * rule.weights.size());
    return py::make_tuple(alphas, weights);
}

// A (rows, cols) array of `src` as float32 (round to nearest, as numpy and torch cast).
py::array_t<float> to_float32(const std::vector<double>& src, int64_t rows, int64_t cols) {
    py::array_t<float> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
    float* dst = out.mutable_data();
    for (size_t i = 0; i < src.size(); ++i) {
        dst[i] = static_cast<float>(src[i]);
    }
    return out;
}

py::tuple py_adaptive_grid(const py::object& curves_obj, int64_t M, const std::string& growth,
                           const std::string& placement, int64_t floor, double eps, const std::string& dtype) {
    pathattr::GridOptions opt;
    opt.M = M;
    opt.growth = pathattr::parse_growth(growth);
    opt.placement = pathattr::parse_placement(placement);
    opt.floor = floor;
    opt.eps = eps;
    if (dtype != "float64" && dtype != "float32") {
        throw py::value_error("dtype: expected 'float64' or 'float32', got '" + dtype + "'");
    }

    CurveArray curves = ensure_curves(curves_obj);
    const int64_t B = static_cast<int64_t>(curves.shape(0));
    const int64_t N = static_cast<int64_t>(curves.shape(1)) - 1;
    pathattr::check_grid_options(opt, N);

    py::array_t<int64_t> counts({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(N)});
    const double* in = curves.data();
    int64_t* pc = counts.mutable_data();
    if (dtype == "float64") {
        py::array_t<double> alphas({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(M)});
        py::array_t<double> weights({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(M)});
        double* pa = alphas.mutable_data();
        double* pw = weights.mutable_data();
        {
            // `curves` keeps its buffer alive (it is a local owning reference) while released.
            py::gil_scoped_release release;
            pathattr::adaptive_grid_batch(in, B, N, opt, pa, pw, pc);
        }
        return py::make_tuple(alphas, weights, counts);
    }
    // float32: computed in float64 as always, rounded once on the way out (saves the
    // caller two conversions per call on the latency path).
    std::vector<double> a(static_cast<size_t>(B * M)), w(static_cast<size_t>(B * M));
    {
        py::gil_scoped_release release;
        pathattr::adaptive_grid_batch(in, B, N, opt, a.data(), w.data(), pc);
    }
    return py::make_tuple(to_float32(a, B, M), to_float32(w, B, M), counts);
}

py::tuple py_truncate(const py::object& curves_obj, double r, const std::string& threshold) {
    const pathattr::Threshold th = pathattr::parse_threshold(threshold);
    CurveArray curves = ensure_curves(curves_obj);
    const int64_t B = static_cast<int64_t>(curves.shape(0));
    const int64_t N = static_cast<int64_t>(curves.shape(1)) - 1;
    pathattr::check_truncate_options(r, N);
    py::array_t<double> alpha_star(static_cast<py::ssize_t>(B));
    py::array_t<bool> whole(static_cast<py::ssize_t>(B));
    const double* in = curves.data();
    double* pa = alpha_star.mutable_data();
    bool* pw = whole.mutable_data();
    {
        py::gil_scoped_release release;
        pathattr::truncate_batch(in, B, N, r, th, pa, pw);
    }
    return py::make_tuple(alpha_star, whole);
}

// ---- refinement in rounds (refine.hpp): the interval table travels as numpy arrays.
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, py::ssize_t rows, py::ssize_t cols = -1) {
    py::array_t<T> out = cols < 0 ? py::array_t<T>(rows) : py::array_t<T>({rows, cols});
    if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), sizeof(T) * v.size());
    return out;
}

py::tuple table_tuple(const pathattr::IntervalTable& t) {
    const auto K = static_cast<py::ssize_t>(t.lo.size());
    return py::make_tuple(to_array(t.lo, K), to_array(t.width, K), to_array(t.input, K),
                          to_array(t.points, K, pathattr::kPointsPerInterval));
}

pathattr::IntervalTable table_from(const F64& lo, const F64& width, const I64& input, const I64& points) {
    const auto K = lo.size();
    if (width.size() != K || input.size() != K || points.ndim() != 2 ||
        points.shape(0) != static_cast<py::ssize_t>(K) || points.shape(1) != pathattr::kPointsPerInterval) {
        throw py::value_error("table: expected lo, width, input of shape (K,) and points of shape (K, 5)");
    }
    pathattr::IntervalTable t;
    t.lo.assign(lo.data(), lo.data() + K);
    t.width.assign(width.data(), width.data() + K);
    t.input.assign(input.data(), input.data() + K);
    t.points.assign(points.data(), points.data() + points.size());
    return t;
}

py::tuple py_initial_grid(const F64& upper, int64_t intervals) {
    pathattr::IntervalTable t;
    pathattr::NewPoints p;
    {
        py::gil_scoped_release release;
        pathattr::initial_grid(upper.data(), static_cast<int64_t>(upper.size()), intervals, t, p);
    }
    const auto P = static_cast<py::ssize_t>(p.alpha.size());
    return py::make_tuple(table_tuple(t), to_array(p.alpha, P), to_array(p.input, P));
}

py::tuple py_refine_round(const F64& lo, const F64& width, const I64& input, const I64& points, const F64& eta,
                          const U8& active, const I64& budget, int64_t n_stored, double theta2, double min_width) {
    pathattr::IntervalTable t = table_from(lo, width, input, points);
    const auto B = static_cast<int64_t>(active.size());
    if (eta.size() != lo.size()) throw py::value_error("eta: expected one indicator per interval");
    if (budget.size() != active.size()) throw py::value_error("budget: expected one entry per input");
    if (!(theta2 > 0.0 && theta2 <= 1.0)) throw py::value_error("theta2: expected a share in (0, 1]");
    pathattr::RefineOptions opt;
    opt.theta2 = theta2;
    opt.min_width = min_width;
    pathattr::NewPoints p;
    py::array_t<int64_t> marked(static_cast<py::ssize_t>(B));
    int64_t* pm = marked.mutable_data();
    {
        py::gil_scoped_release release;
        pathattr::refine_round(t, eta.data(), B, active.data(), budget.data(), n_stored, opt, p, pm);
    }
    const auto P = static_cast<py::ssize_t>(p.alpha.size());
    return py::make_tuple(table_tuple(t), to_array(p.alpha, P), to_array(p.input, P), marked);
}

py::array_t<double> py_composite_weights(const F64& width, const I64& points, const U8& smooth, int64_t P) {
    if (smooth.size() != width.size()) throw py::value_error("smooth: expected one flag per interval");
    F64 lo = F64(static_cast<py::ssize_t>(width.size()));
    std::fill(lo.mutable_data(), lo.mutable_data() + lo.size(), 0.0);
    I64 input = I64(static_cast<py::ssize_t>(width.size()));
    std::fill(input.mutable_data(), input.mutable_data() + input.size(), 0);
    pathattr::IntervalTable t = table_from(lo, width, input, points);
    py::array_t<double> w(static_cast<py::ssize_t>(P));
    double* pw = w.mutable_data();
    {
        py::gil_scoped_release release;
        pathattr::composite_weights(t, smooth.data(), P, pw);
    }
    return w;
}

}  // namespace

PYBIND11_MODULE(_scheduler, m) {
    m.doc() = "Sampling schedules for path attribution: quadrature rules and the adaptive "
              "IDG grid (docs/methods.md §1 and §2.1). No torch; numpy arrays in and out.";

    m.def("quadrature", &py_quadrature, py::arg("method"), py::arg("n"),
          R"doc(Quadrature rule on [0, 1] with n points.

Args:
    method: 'riemann_left' (k/n), 'riemann_right' ((k+1)/n), 'riemann_middle'
        ((k+0.5)/n), all with weights 1/n; 'riemann_trapezoid' (k/(n-1), weights
        1/(n-1) with both ends halved, so they sum to 1; needs n >= 2);
        'gausslegendre' ((1+xi_k)/2, omega_k/2 for the n-point Gauss-Legendre rule,
        accurate to ~1e-15 for n <= 1024).
    n: number of points, >= 1.

Returns:
    (alphas, weights): float64 arrays of shape (n,), alphas ascending.

Raises:
    ValueError: unknown method, n < 1, or n < 2 for the trapezoid rule.
)doc");

    m.def("adaptive_grid", &py_adaptive_grid, py::arg("curves"), py::arg("M"),
          py::arg("growth") = "abs", py::arg("placement") = "midpoint", py::arg("floor") = 1,
          py::arg("eps") = 1e-12, py::arg("dtype") = "float64",
          R"doc(Adaptive IDG sampling grid (docs/methods.md §2.1), batched over rows.

Args:
    curves: (B, N+1) array, L_j = F(p(j/N)) per example; converted to float64; must
        be finite. B may be 0. N >= 1.
    M: samples per example, >= floor*N.
    growth: 'abs' (|dL|, default) or 'positive' (max(dL, 0)).
    placement: 'midpoint' (default) or 'left' (the paper).
    floor: samples every interval gets first (default 1, >= 0).
    eps: flat-curve threshold; sum of growth <= eps*max(1, max|L|) gives uniform
        shares (default 1e-12, finite, >= 0).
    dtype: 'float64' (default) or 'float32' for alphas and weights (computed in
        float64 either way, rounded once to nearest).

Returns:
    (alphas (B, M) float64 ascending per row, weights (B, M) float64,
     counts (B, N) int64 samples per interval, each row summing to M).
    Interval j's samples lie in [j/N, (j+1)/N), each with weight 1/(N*n_j).

Raises:
    ValueError: naming the offending argument (and the row for non-finite curves).
)doc");
    m.def("truncate", &py_truncate, py::arg("curves"), py::arg("r") = 0.9,
          py::arg("threshold") = "baseline",
          R"doc(Left-IG truncation point alpha* per example (docs/methods.md §3), batched over rows.

Args:
    curves: (B, N+1) array, L_j = F(p(j/N)) per example; converted to float64; must
        be finite. B may be 0. N >= 1.
    r: fraction in (0, 1] (default 0.9).
    threshold: 'baseline' (tau = L_0 + r (L_N - L_0), default) or 'max'
        (tau = r * max_j L_j, the IDG authors' variant).

Returns:
    (alpha_star (B,) float64 in (0, 1], used_whole_path (B,) bool).
    alpha* = (j - 1 + t) / N at the first upward crossing L_{j-1} < tau <= L_j,
    t = (tau - L_{j-1}) / (L_j - L_{j-1}) (linear interpolation between probe
    points). The whole path (alpha* = 1, flag True) when L_N <= L_0 (F(x) <= F(x'))
    or when the curve never crosses tau upward. Computed on L/2 so that no
    difference overflows; identical to the plain formula where that is finite.

Raises:
    ValueError: naming the offending argument (and the row for non-finite curves).
)doc");
    m.def("initial_grid", &py_initial_grid, py::arg("upper"), py::arg("intervals"),
          R"doc(First round of error-controlled refinement (docs/methods.md §14).

Args:
    upper: (B,) path ends U_b in (0, 1] (1 for the whole path).
    intervals: K0 >= 1 equal intervals per input.

Returns:
    ((lo, width, input, points), alpha, point_input): the interval table (K = B*K0 rows;
    points (K, 5) int64 indices of each interval's samples a, a+h/4, a+h/2, a+3h/4, b) and
    the 4*K0 + 1 samples of every input, numbered from 0, input by input.
)doc");
    m.def("refine_round", &py_refine_round, py::arg("lo"), py::arg("width"), py::arg("input"), py::arg("points"),
          py::arg("eta"), py::arg("active"), py::arg("budget"), py::arg("n_stored"), py::arg("theta2") = 0.5,
          py::arg("min_width") = 0x1p-40,
          R"doc(One refinement round (docs/methods.md §14).

Per active input, bisects the fewest intervals with the largest indicators eta whose
squared sum reaches theta2 of the input's total (at most budget[b] bisections; intervals
narrower than min_width are kept). Each bisection adds the four eighth points; both
children reuse three of the parent's samples.

Returns:
    ((lo, width, input, points), alpha, point_input, marked): the new table, the new
    samples (store indices n_stored, n_stored + 1, ... in order) and bisections per input.
)doc");
    m.def("composite_weights", &py_composite_weights, py::arg("width"), py::arg("points"), py::arg("smooth"),
          py::arg("n_points"),
          R"doc(Per-sample weights of the composite rule over an interval table: Simpson on the
two halves where smooth, else the trapezoid on the quarters; shared ends add up.
)doc");
}
