"""The quality study (benchmarks/quality*.py) and its HTML report (pathattr.apps.quality_report).

The full study's results are committed; here: a --quick smoke run (a few seconds), the
study's own machinery against independent computations (the candidate scheduler
against the library's C++ scheduler, the study's fold against the public IDG/IG
functions, the bootstrap, the censoring rule), and the report rendered in headless
Chromium with every image present.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pathattr as pa  # noqa: E402
from pathattr.engine import schedule as schedules  # noqa: E402
from pathattr.engine.core import PathEngine  # noqa: E402
from pathattr.apps.quality_report import is_quality_results, write_quality_report  # noqa: E402

from benchmarks import quality as q  # noqa: E402
from benchmarks import quality_data as qd  # noqa: E402
from benchmarks import quality_efficiency as qe  # noqa: E402

from conftest import assert_close  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    assert q.run(out, quick=True, quiet=True) == 0
    return out


def test_quick_run_writes_results(quick_dir):
    doc = json.loads((quick_dir / "quality.json").read_text())
    assert doc["kind"] == "pathattr-quality"
    digits = doc["table"]["digits"]
    assert set(digits["methods"]) == {"IG", "IDG adaptive"}
    for m, v in digits["methods"].items():
        for k in ("insertion", "deletion", "diffid"):
            b = v[k]
            assert b["n"] == 4 and b["lo"] <= b["mean"] <= b["hi"], (m, k, b)
        assert 0.0 <= v["insertion"]["mean"] <= 1.0
        # the bootstrap mean is the mean of the stored per-image scores
        assert v[k]["mean"] == pytest.approx(np.mean(v["_per_image"][k]), rel=1e-12)
    eff = doc["efficiency"]
    assert [m["name"] for m in eff["models"]] == ["digits", "sigmoid_late"]
    for m in eff["models"]:
        errs = m["curves"]["IDG ours"]["errors"]
        assert errs[-1] < errs[0]  # more samples, less error
    for p in doc["plots"]:
        assert (quick_dir / p).stat().st_size > 1000
    md = (quick_dir / "quality.md").read_text()
    assert "| IG |" in md and "IDG ours" in md
    assert is_quality_results(quick_dir)


def test_is_quality_results_and_bad_folder(tmp_path):
    assert not is_quality_results(tmp_path)
    (tmp_path / "quality.json").write_text(json.dumps({"kind": "something-else"}))
    assert not is_quality_results(tmp_path)
    (tmp_path / "quality.json").write_text("{not json")
    assert not is_quality_results(tmp_path)
    with pytest.raises(ValueError, match="results_dir"):
        write_quality_report(tmp_path)


def test_report_names_missing_plot(quick_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(quick_dir, d)
    (d / "examples-digits.png").unlink()
    with pytest.raises(FileNotFoundError, match="examples-digits.png"):
        write_quality_report(d)


_PROBE = ("<script>addEventListener('load',()=>{const a=[...document.images];"
          "document.body.setAttribute('data-loaded',a.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+a.length)})"
          "</script></body>")


def _loaded_images(page: Path):
    """(loaded, total) <img> of `page` rendered in headless Chromium."""
    probe = page.with_name("_probe.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE))
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-loaded="(\d+)/(\d+)"', dom)
    assert m, f"chromium rendered no page: {dom[:300]!r}"
    return int(m.group(1)), int(m.group(2))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium); .ci/run installs it")
def test_report_renders_with_every_image_in_chromium(quick_dir, tmp_path):
    page = write_quality_report(quick_dir)
    html = page.read_text()
    n_img = html.count("<img ")
    assert n_img == len(json.loads((quick_dir / "quality.json").read_text())["plots"]) == 3
    assert _loaded_images(page) == (n_img, n_img)
    # the check can fail: a broken image is seen as not loaded
    d = tmp_path / "broken"
    shutil.copytree(quick_dir, d)
    (d / "efficiency-digits.png").write_bytes(b"not a png")
    assert _loaded_images(d / "report.html") == (n_img - 1, n_img)


# ------------------------------------------------------------ the machinery
@pytest.mark.parametrize("M", [8, 13, 50, 200])
def test_candidate_scheduler_equals_library_for_our_defaults(seed, M):
    """The NumPy candidate scheduler with our settings gives the C++ scheduler's grid."""
    g = torch.Generator().manual_seed(seed)
    N = max(2, M // 4)
    edges = np.arange(N + 1) / N
    for _ in range(20):
        curve = torch.cumsum(torch.randn(N + 1, generator=g, dtype=torch.float64) ** 3, 0)
        lib = schedules.adaptive(curve.view(1, -1), M)
        a, w = qe.candidate_grid(edges, curve.numpy(), M, qe.OURS)
        assert a.shape == (M,) and np.isclose(w.sum(), 1.0)
        assert_close(torch.from_numpy(a), lib.alphas[0], rtol=0, atol=1e-15)
        assert_close(torch.from_numpy(w), lib.weights[0], rtol=0, atol=1e-15)
    # the paper's schedule is floor 0, left, N = M
    curve = torch.cumsum(torch.rand(M + 1, generator=g, dtype=torch.float64), 0)
    lib = schedules.adaptive(curve.view(1, -1), M, placement="left", floor=0)
    a, w = qe.candidate_grid(np.arange(M + 1) / M, curve.numpy(), M,
                             qe.Candidate("paper", probe_div=1, floor=0, placement="left"))
    assert_close(torch.from_numpy(a), lib.alphas[0], rtol=0, atol=1e-15)


def test_candidate_variants_integrate_exactly(seed):
    """Every candidate with a floor covers [0, 1]: weights sum to 1 (floor 0 may leave
    intervals empty, the paper's defect: then less), midpoint and Gauss placements integrate
    a linear function exactly, left placement does not."""
    g = torch.Generator().manual_seed(seed)
    for cand in qe.CANDIDATES:
        M = 64
        N = cand.n_probe(M) + cand.refine
        edges = np.sort(np.concatenate([[0.0, 1.0], torch.rand(N - 1, generator=g).double().numpy()]))
        values = np.cumsum(np.abs(np.random.default_rng(seed).normal(size=N + 1)))
        a, w = qe.candidate_grid(edges, values, M, cand)
        assert a.shape == (M,) and ((a >= 0) & (a < 1)).all()
        if cand.floor > 0:
            assert w.sum() == pytest.approx(1.0, abs=1e-12)
            exact = (w * a).sum() == pytest.approx(0.5, abs=1e-12)
            assert exact if cand.placement in ("midpoint", "gauss") else not exact
        else:
            assert w.sum() <= 1.0 + 1e-12


def test_study_fold_equals_public_functions(seed):
    """The study's own fold (IG and IDG from one gradient pass) equals pa.integrated_gradients /
    pa.integrated_decision_gradients on the digits CNN for the same uniform rule."""
    scn = qd.load("digits", 3)
    model = scn.model.double()
    x = scn.inputs.double()
    eng = PathEngine(model, accumulate_dtype=torch.float64)
    batch = eng.prepare(x, 0.0, scn.target)
    a, w = schedules.quadrature("riemann_middle", 24)
    ig, idg = qe.fold(eng, batch, torch.from_numpy(np.tile(a, (3, 1))), torch.from_numpy(np.tile(w, (3, 1))), chunk=7)
    ref_ig = pa.integrated_gradients(model, x, target=scn.target, n_steps=24, method="riemann_middle")
    ref_idg = pa.integrated_decision_gradients(model, x, target=scn.target, n_steps=24, schedule="uniform",
                                               method="riemann_middle")
    assert_close(ig, ref_ig.reshape(3, -1), rtol=1e-10, atol=1e-12)
    assert_close(idg, ref_idg.reshape(3, -1), rtol=1e-10, atol=1e-12)
    # and the library schedule "ours" is what pa.integrated_decision_gradients uses by default
    sa, sw, probes = qe.library_schedule(eng, batch, 24, "ours")
    _, ours = qe.fold(eng, batch, sa, sw)
    default = pa.integrated_decision_gradients(model, x, target=scn.target, n_steps=24)
    assert probes == 7
    assert_close(ours, default.reshape(3, -1), rtol=1e-10, atol=1e-12)
    scn.model.float()


def test_synthetic_path_has_its_transition():
    scn = qd.synthetic("sigmoid_late", 3)
    alphas = torch.tensor([0.0, 0.79, 0.8, 0.81, 1.0], dtype=torch.float64)
    z = scn.inputs.double()[:, None, :] * alphas[None, :, None]
    F = scn.model(z.reshape(-1, z.shape[-1])).reshape(3, -1)[:, :] - scn.model(z.reshape(-1, z.shape[-1]) * 0).reshape(3, -1)
    sig = 10 * torch.sigmoid(200 * (alphas - 0.8)) - 10 * torch.sigmoid(torch.tensor(-160.0, dtype=torch.float64))
    # the tanh term adds at most sum(c) <= 1.6 on top of the sigmoid's 10
    assert (F - sig).abs().max() < 1.7
    assert (F[:, 3] - F[:, 1]).min() > 3.0  # the jump happens within 0.02 of alpha 0.8


def test_evals_to_and_censoring():
    grid = [8, 16, 32, 64]
    assert qe.evals_to(grid, [0.1, 0.005, 0.02, 0.001], 0.01) == 64  # must stay below
    assert qe.evals_to(grid, [0.1, 0.005, 0.002, 0.001], 0.01) == 16
    assert qe.evals_to(grid, [0.1, 0.05, 0.02, 0.011], 0.01) is None
    e = [{"gradient_evals": None, "max_M": 64}, {"gradient_evals": 32, "max_M": 64}]
    assert qe.geomean(e) == pytest.approx(np.sqrt(128 * 32))


def test_bootstrap_and_bshap_agreement(seed):
    v = np.random.default_rng(seed).normal(size=50)
    b = q.bootstrap(v, seed=3)
    assert b == q.bootstrap(v, seed=3) and b["lo"] < b["mean"] < b["hi"] and b["n"] == 50
    # the interval is about mean +- 1.96 standard errors
    se = v.std(ddof=1) / np.sqrt(50)
    assert b["hi"] - b["lo"] == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert q.bootstrap([np.nan, 1.0])["n"] == 1
    r = torch.randn(5, 6, dtype=torch.float64)
    s = q.agreement_with_bshap(r, r)
    assert np.allclose(s["cosine"], 1) and np.allclose(s["spearman"], 1) and s["top1"].all()
    s = q.agreement_with_bshap(-r, r)
    assert np.allclose(s["cosine"], -1) and np.allclose(s["spearman"], -1)


def test_installed_cli_has_no_bench_and_never_touches_sys_path(monkeypatch):
    """The study runs from a checkout (`python -m benchmarks.quality`); the installed CLI
    neither imports benchmarks/ nor edits sys.path (it did, for `pathattr bench`)."""
    import pathattr.apps.cli as cli

    monkeypatch.delitem(sys.modules, "benchmarks", raising=False)
    before = list(sys.path)
    with pytest.raises(SystemExit):
        cli.main(["bench", "quality", "--quick"])
    assert sys.path == before and "benchmarks" not in sys.modules
    assert "sys.path" not in Path(cli.__file__).read_text()


def test_pathattr_report_dispatches_to_the_quality_report(tmp_path):
    """`pathattr report DIR` on a quality results folder writes the quality page, not a run report."""
    import shutil
    from pathlib import Path

    from pathattr.apps.cli import main

    src = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "quality"
    dst = tmp_path / "quality"
    shutil.copytree(src, dst)
    (dst / "report.html").unlink()
    assert main(["report", str(dst)]) == 0
    page = (dst / "report.html").read_text()
    assert "efficiency" in page.lower() and "<img" in page
    assert main(["report", str(dst), "--out", str(tmp_path / "x.html")]) == 2
