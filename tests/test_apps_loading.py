"""What `pathattr attribute` and `pathattr serve` share (apps/loading.py, apps/options.py):
the same model files and factories (torch.export .pt2 included, imported from the working
folder without leaving it on sys.path), the same flags with the old spellings still read,
and a missing optional extra named with the pip command that brings it."""
import argparse
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import assert_close
from jobfactories import SHAPE, tiny_cnn, tiny_dataset
from pathattr.apps import extras, loading, options


def _export(model, path, dynamic=True):
    x = torch.rand((2,) + SHAPE)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=shapes), str(path))
    return path


def test_torch_export_program_loads_and_runs_like_the_model(tmp_path):
    net = tiny_cnn().eval()
    path = _export(net, tmp_path / "tiny.pt2")
    model, desc, name = loading.load_model(str(path))
    x = torch.rand((5,) + SHAPE, requires_grad=True)  # another batch size than at export
    assert name == "tiny" and desc.startswith("torch.export")
    assert_close(model(x), net(x), rtol=1e-6, atol=1e-7)
    # and gradients flow through it, equal to the module's
    got = torch.autograd.grad(model(x)[:, 1].sum(), x)[0]
    want = torch.autograd.grad(net(x)[:, 1].sum(), x)[0]
    assert_close(got, want, rtol=1e-6, atol=1e-7)
    # the same file under another suffix is recognised too
    other = tmp_path / "tiny.bin"
    other.write_bytes(path.read_bytes())
    assert_close(loading.load_model(str(other))[0](x), net(x), rtol=1e-6, atol=1e-7)


def test_export_with_a_fixed_batch_is_refused_with_the_fix(tmp_path):
    path = _export(tiny_cnn().eval(), tmp_path / "fixed.pt2", dynamic=False)
    with pytest.raises(loading.LoadError, match=r"fixed batch size 2.*Dim\('batch'\)"):
        loading.load_model(str(path))
    bad = tmp_path / "junk.pt2"
    bad.write_bytes(b"not a model")
    with pytest.raises(loading.LoadError, match="neither a torch.export program .* nor a TorchScript file"):
        loading.load_model(str(bad))


def test_job_and_serve_read_a_pt2_model(tmp_path, one_thread):
    pytest.importorskip("zarr")
    from jobfactories import open_store
    from pathattr.apps.job import JobConfig, run_job

    path = _export(tiny_cnn().eval(), tmp_path / "tiny.pt2")
    np.save(tmp_path / "x.npy", tiny_dataset().tensors[0][:6].numpy())
    common = dict(steps=4, data=str(tmp_path / "x.npy"), quiet=True, batch_size=3, chunk_size=3)
    run_job(JobConfig(out=str(tmp_path / "pt2"), model=str(path), **common))
    run_job(JobConfig(out=str(tmp_path / "factory"), model="jobfactories:tiny_cnn", **common))
    a, b = open_store(tmp_path / "pt2"), open_store(tmp_path / "factory")
    assert_close(a["attributions"], b["attributions"], rtol=1e-5, atol=1e-6, what=".pt2 vs factory")
    pytest.importorskip("fastapi")
    from pathattr.apps.serve import load_spec

    spec = load_spec(str(path), input_shape="1,6,6", device="cpu")
    assert spec.name == "tiny" and spec.input_shape == SHAPE


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A user's own module in the working folder, not importable from anywhere else."""
    (tmp_path / "my_models_ab12.py").write_text(textwrap.dedent("""
        import torch
        import my_helpers_ab12  # imported while the factory runs: the folder must still be importable

        def make():
            torch.manual_seed(3)
            return torch.nn.Linear(5, my_helpers_ab12.CLASSES)
        """))
    (tmp_path / "my_helpers_ab12.py").write_text("CLASSES = 4\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("my_models_ab12", "my_helpers_ab12"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_factory_imports_from_the_working_folder_and_leaves_sys_path_alone(user_folder):
    before = list(sys.path)
    model, desc, name = loading.load_model("my_models_ab12:make")
    assert isinstance(model, torch.nn.Linear) and model.out_features == 4 and name == "make"
    assert sys.path == before  # was: the working folder prepended for good


def test_serve_imports_from_the_working_folder(user_folder):
    pytest.importorskip("fastapi")
    from pathattr.apps.serve import load_spec

    before = list(sys.path)
    spec = load_spec("my_models_ab12:make", input_shape="5", device="cpu")
    assert spec.name == "make" and spec.model.out_features == 4 and sys.path == before


SHARED = ["--model", "m:f", "--checkpoint", "w.pt", "--method", "ig", "--steps", "7", "--set", "rule=riemann_left",
          "--set", "x-y=[1, 2]", "--internal-batch-size", "64", "--dtype", "fp64", "--output", "softmax",
          "--device", "cpu"]


def _parsers():
    from pathattr.apps.cli import add_serve_parser
    from pathattr.apps.job.cli import add_attribute_parser

    top = argparse.ArgumentParser(prog="pathattr")
    sub = top.add_subparsers(dest="command")
    add_attribute_parser(sub)
    add_serve_parser(sub)
    return top


def test_attribute_and_serve_read_the_same_flags():
    top = _parsers()
    job = vars(top.parse_args(["attribute", "--out", "o"] + SHARED))
    srv = vars(top.parse_args(["serve"] + SHARED))
    keys = ("model", "checkpoint", "method", "steps", "settings", "internal_batch_size", "dtype", "output", "device")
    assert {k: job[k] for k in keys} == {k: srv[k] for k in keys}
    assert srv["settings"] == [("rule", "riemann_left"), ("x_y", [1, 2])] and srv["steps"] == 7
    assert options.method_settings(top.parse_args(["serve"] + SHARED)) == {"rule": "riemann_left", "x_y": [1, 2],
                                                                           "n_steps": 7}
    defaults = top.parse_args(["serve"])
    assert defaults.model is None and defaults.device == "auto" and defaults.dtype == "fp32"


@pytest.mark.parametrize("command", [["serve"], ["attribute", "--out", "o"]])
def test_old_spellings_still_work_hidden_and_say_their_new_name(command, capsys):
    top = _parsers()
    args = top.parse_args(command + ["--n-steps", "9", "--setting", "schedule=uniform", "--set", "a=true",
                                     "--setting", "b=None"])
    assert args.steps == 9 and args.settings == [("schedule", "uniform"), ("a", True), ("b", None)]
    err = capsys.readouterr().err
    assert "--n-steps is now spelled --steps" in err and "--setting is now spelled --set" in err
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[command[0]]
    text = sub.format_help()
    assert "--steps" in text and "--set" in text and "--n-steps" not in text and "--setting" not in text
    with pytest.raises(SystemExit):
        top.parse_args(command + ["--set", "novalue"])


def test_a_missing_extra_is_named_with_its_pip_command(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(extras.MissingExtra, match=r"needs uvicorn, which is not installed: pip install 'pathattr\[serve\]'"):
        extras.require("serve")
    from pathattr.apps.cli import main

    assert main(["serve"]) == 2
    assert "pip install 'pathattr[serve]'" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "zarr" else real(name, *a))
    assert main(["attribute", "--out", "never"]) == 2
    assert "pip install 'pathattr[job]'" in capsys.readouterr().err
