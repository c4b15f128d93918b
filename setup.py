"""Build pathattr: the pybind11 scheduler from csrc/ plus two Python trees.

python/pathattr installs as `pathattr`, fastpath/ as `pathattr.fastpath`.
The extension has no torch dependency, so the build needs only pybind11.
"""
from setuptools import find_packages, setup
from pybind11.setup_helpers import Pybind11Extension, build_ext

ext = Pybind11Extension(
    "pathattr._scheduler",
    sorted(["csrc/bindings.cpp", "csrc/quadrature.cpp", "csrc/refine.cpp", "csrc/adaptive_grid.cpp", "csrc/truncate.cpp"]),
    include_dirs=["csrc"],
    cxx_std=17,
    # No FMA contraction: the scheduler must agree bit for bit with its numpy reference.
    extra_compile_args=["-O2", "-ffp-contract=off"],
)

setup(
    # Found, not listed: a new subpackage cannot be left out of the wheel.
    packages=find_packages("python") + ["pathattr.fastpath"],
    package_dir={"": "python", "pathattr.fastpath": "fastpath"},
    package_data={"pathattr.data": ["*.pt", "*.json"]},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
