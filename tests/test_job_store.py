"""`pathattr attribute` on the bundled default: resume after SIGKILL, torchrun, refusal.

Acceptance (issue #6): a run SIGKILLed at three random points and rerun equals an
uninterrupted run file for file; a 2-rank torchrun on CPU (one rank killed once, then
resumed) equals the 1-process run; changed settings into the same store are refused.
Tiny settings keep the file fast: 160 digits, 8 steps, chunks of 8 items (20 chunks).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("zarr")

from pathattr.apps.job import JobConfig, JobError, run_job  # noqa: E402

ARGS = ["--steps", "8", "--limit", "160", "--chunk-size", "8", "--batch-size", "8"]
N_CHUNKS = 20
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
# One thread per process: on a busy 2-core machine two OpenMP threads per process
# spin against each other (measured: 160 items in 17 s with 2 threads, 1.4 s with 1).
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _cmd(out):
    return [sys.executable, "-m", "pathattr", "attribute", "--out", str(out), "--quiet"] + ARGS


def _store_files(run_dir):
    """Every file of the Zarr store, path -> bytes (chunks are compressed deterministically)."""
    root = Path(run_dir) / "store.zarr"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same_store(a, b):
    fa, fb = _store_files(a), _store_files(b)
    assert sorted(fa) == sorted(fb), set(fa) ^ set(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"files differ: {differ[:5]}"


def _markers(run_dir):
    d = Path(run_dir) / "chunks"
    return len(list(d.glob("chunk-*.json"))) if d.is_dir() else 0


def _kill_when(proc, run_dir, at_markers, pid_of=None, jitter=0.004):
    """SIGKILL (proc, or the process pid_of(proc) names) once `at_markers` chunks are done,
    plus a random few ms so the kill lands anywhere in the next chunk's work."""
    while _markers(run_dir) < at_markers:
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    time.sleep(random.uniform(0, jitter))
    pid = pid_of(proc) if pid_of else proc.pid
    if pid is None or proc.poll() is not None:
        return False
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return True


def _run_one_thread(cfg):
    """run_job with one intra-op thread, as the subprocess runs (OMP_NUM_THREADS=1): oneDNN's
    reductions can round differently with 2 threads, and stores are compared byte for byte."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_job(cfg)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run, in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    manifest = _run_one_thread(JobConfig(out=str(out), steps=8, limit=160, chunk_size=8, batch_size=8, quiet=True))
    assert manifest["complete"] and manifest["items"] == 160 and manifest["chunks"] == N_CHUNKS
    return out


@pytest.mark.slow
def test_sigkill_three_times_then_resume_equals_uninterrupted(reference, tmp_path, seed):
    out = tmp_path / "run"
    points = sorted(random.Random(seed).sample(range(0, N_CHUNKS - 6), 3))
    seen = []
    for k in points:
        proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        killed = _kill_when(proc, out, k)
        assert killed, f"the run ended before the kill at {k} chunks: {proc.stderr.read().decode()[-2000:]}"
        assert not (out / "manifest.json").exists()
        seen.append(_markers(out))
    assert seen == sorted(seen) and seen[-1] < N_CHUNKS, seen  # finished chunks are kept, never lost
    before = {p.name: p.read_bytes() for p in (out / "chunks").glob("*.json")}
    if seen[-1]:  # the report of an unfinished run says so
        from pathattr.apps.job.report import write_report

        page = write_report(out, tmp_path / "partial.html").read_text()
        assert f"incomplete: {8 * seen[-1]} of 160 items finished" in page
    proc = subprocess.run(_cmd(out) + ["--log-json"], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    # The rerun computed exactly the chunks that had no marker; finished ones were not touched.
    recomputed = {e["chunk"] for e in events if e["event"] == "chunk"}
    assert recomputed == set(range(N_CHUNKS)) - {int(n[6:12]) for n in before}
    assert all((out / "chunks" / n).read_bytes() == b for n, b in before.items())
    assert events[-1]["event"] == "done" and events[-1]["items"] == 160
    assert not list(out.rglob("*.partial")) and not list(out.rglob(".*.tmp"))  # a killed writer's leftovers
    _assert_same_store(out, reference)


def test_rerun_of_finished_run_computes_nothing(reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    m = run_job(JobConfig(out=str(out), steps=8, limit=160, chunk_size=8, batch_size=8, quiet=True))
    assert m["throughput"]["items"] == 0
    _assert_same_store(out, reference)


def _rank_pid(proc):
    """A random torchrun worker's pid (a child of the torchrun process), from /proc."""
    try:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    kids = [int(k) for k in kids]
    return random.choice(kids) if kids else None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")
def test_torchrun_two_ranks_killed_and_resumed_equals_one_process(reference, tmp_path, seed):
    out = tmp_path / "dist"
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "pathattr", "attribute", "--out", str(out),
           "--quiet"] + ARGS
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    random.seed(seed)
    killed = _kill_when(proc, out, random.randrange(2, N_CHUNKS - 8), pid_of=_rank_pid)
    assert killed, proc.stderr.read().decode()[-3000:]
    assert proc.returncode != 0 and not (out / "manifest.json").exists()
    assert 0 < _markers(out) < N_CHUNKS
    proc = subprocess.run(cmd + ["--log-json"], capture_output=True, text=True, timeout=180, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    starts = [e for e in events if e["event"] == "start"]
    assert sorted(e["rank"] for e in starts) == [0, 1] and all(e["world_size"] == 2 for e in starts)
    # each rank wrote only its own chunks (k mod 2)
    assert all(e["chunk"] % 2 == e["rank"] for e in events if e["event"] == "chunk")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["finished_chunks"] == list(range(N_CHUNKS))
    _assert_same_store(out, reference)
    assert not list(out.rglob(".*.tmp"))


def test_changed_settings_are_refused_and_nothing_is_written(reference, tmp_path, capsys):
    import shutil

    from pathattr.apps.cli import main

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = _store_files(out)
    with pytest.raises(JobError, match=r"different settings.*n_steps: 8 -> 16"):
        run_job(JobConfig(out=str(out), steps=16, limit=160, chunk_size=8, batch_size=8, quiet=True))
    with pytest.raises(JobError, match=r"method: 'idg' -> 'ig'"):
        run_job(JobConfig(out=str(out), method="ig", steps=8, limit=160, chunk_size=8, batch_size=8, quiet=True))
    assert main(["attribute", "--out", str(out), "--quiet", "--store-dtype", "float16"] + ARGS) == 2
    assert "store_dtype: 'float32' -> 'float16'" in capsys.readouterr().err
    assert _store_files(out) == before


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("not a run")
    with pytest.raises(JobError, match="not a pathattr run folder"):
        run_job(JobConfig(out=str(tmp_path), steps=8, limit=8, quiet=True))
    assert sorted(os.listdir(tmp_path)) == ["mine.txt"]


def test_a_creation_killed_half_way_is_started_again(reference, tmp_path):
    import zarr

    out = tmp_path / "run"
    zarr.open_group(str(out / "store.zarr"), mode="w").create_array("attributions", shape=(3,), dtype="float32")
    (out / ".run.json.1234.tmp").write_text("{")  # the state a kill inside create() can leave
    _run_one_thread(JobConfig(out=str(out), steps=8, limit=160, chunk_size=8, batch_size=8, quiet=True))
    _assert_same_store(out, reference)
    assert not list(out.rglob(".*.tmp"))
