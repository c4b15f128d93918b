"""The README's main job, `pathattr demo`, on a slice of the bundled data."""
import json
import subprocess
import sys

from matplotlib.image import imread


def test_demo_writes_pictures_and_summary(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "pathattr", "demo", "--out", str(out), "--limit", "12",
                           "--steps", "8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "images/s" in proc.stdout
    for name in ["attributions.png", "path_curve.png"]:
        img = imread(out / name)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.01, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 12 and len(summary["methods"]) == 2


def test_cli_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pathattr", "demo", "--steps", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--steps" in proc.stderr
