"""`pathattr attribute` inputs and outputs: what lands in the store is checked against
independent computations (Captum 0.9 IG in fp64, the model called directly), every
input kind (image folder, .npy/.npz, module:factory, TorchScript) runs, bad inputs
give clear errors, and `pathattr report` writes its page. All in-process and small."""
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")

from conftest import assert_close  # noqa: E402
from jobfactories import SHAPE, open_store, tiny_cnn, tiny_dataset  # noqa: E402
from pathattr.apps.cli import main  # noqa: E402
from pathattr.apps.job import JobConfig, JobError, run_job  # noqa: E402


_open = open_store


def test_stored_ig_equals_captum_fp64_and_metadata_equals_the_model(tmp_path, one_thread):
    from captum.attr import IntegratedGradients

    x, y = tiny_dataset().tensors
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "run"
    run_job(JobConfig(out=str(out), method="ig", steps=16, method_settings={"rule": "gausslegendre"},
                      model="jobfactories:tiny_cnn", data=str(tmp_path / "x.npy"), dtype="fp64", batch_size=6,
                      chunk_size=8, quiet=True))
    s = _open(out)
    model = tiny_cnn().double().eval()
    xd = x.double()
    with torch.no_grad():
        logits = model(xd)
        base = model(torch.zeros_like(xd[:1]))[0]
    target = logits.argmax(1)
    ig = IntegratedGradients(model)
    ref, delta = ig.attribute(xd, baselines=torch.zeros_like(xd), target=target, n_steps=16,
                              method="gausslegendre", return_convergence_delta=True)
    assert s["attributions"].dtype == np.float32 and s["attributions"].shape == (20,) + SHAPE
    assert_close(s["attributions"], ref, rtol=1e-6, atol=1e-7, what="attributions vs Captum")
    assert_close(s["delta"], delta, rtol=1e-5, atol=1e-6, what="delta vs Captum")
    assert (s["index"] == np.arange(20)).all() and (s["target"] == target.numpy()).all()
    assert (s["label"] == -1).all()  # a .npy carries no labels
    assert_close(s["logit"], logits.gather(1, target[:, None])[:, 0], rtol=1e-6, atol=1e-6, what="logit")
    assert_close(s["baseline_value"], base[target], rtol=1e-6, atol=1e-6, what="F(baseline)")
    assert "probe_curve" not in s  # IG probes nothing


def test_idg_npz_labels_float16_probe_curve_and_factory_dataset_agree(tmp_path, one_thread):
    x, y = tiny_dataset().tensors
    np.savez(tmp_path / "d.npz", images=x.numpy(), labels=y.numpy())
    common = dict(method="idg", steps=8, model="jobfactories:tiny_cnn", target="label", batch_size=4,
                  chunk_size=8, quiet=True)
    run_job(JobConfig(out=str(tmp_path / "a"), data=str(tmp_path / "d.npz"), store_dtype="float16", workers=2,
                      **common))
    run_job(JobConfig(out=str(tmp_path / "b"), data="jobfactories:tiny_dataset", **common))
    a, b = _open(tmp_path / "a"), _open(tmp_path / "b")
    assert a["attributions"].dtype == np.float16 and b["attributions"].dtype == np.float32
    assert (a["target"] == y.numpy()).all() and (a["label"] == y.numpy()).all()
    # Same items, same batches (DataLoader workers or not): identical numbers, up to the
    # float16 rounding of the store.
    assert np.array_equal(a["attributions"], b["attributions"].astype(np.float16))
    assert np.array_equal(a["delta"], b["delta"]) and np.array_equal(a["probe_curve"], b["probe_curve"])
    # the probe curve runs from F(x') to F(x) (n_probe = 2 for 8 steps)
    assert a["probe_curve"].shape == (20, 3)
    assert_close(a["probe_curve"][:, 0], a["baseline_value"], rtol=1e-6, atol=1e-6, what="curve start")
    assert_close(a["probe_curve"][:, -1], a["logit"], rtol=1e-5, atol=1e-5, what="curve end")


def test_torchscript_model_and_checkpoint_give_the_factory_result(tmp_path, one_thread):
    x, _ = tiny_dataset().tensors
    np.save(tmp_path / "x.npy", x.numpy())
    model = tiny_cnn()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # weights that differ from the factory's, so loading is visible
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    common = dict(steps=8, data=str(tmp_path / "x.npy"), quiet=True, batch_size=8, chunk_size=8)
    run_job(JobConfig(out=str(tmp_path / "ckpt"), model="jobfactories:tiny_cnn", checkpoint=str(tmp_path / "w.pt"),
                      **common))
    run_job(JobConfig(out=str(tmp_path / "ts"), model=str(tmp_path / "m.ts"), **common))
    run_job(JobConfig(out=str(tmp_path / "plain"), model="jobfactories:tiny_cnn", **common))
    c, t, p = _open(tmp_path / "ckpt"), _open(tmp_path / "ts"), _open(tmp_path / "plain")
    assert_close(c["attributions"], t["attributions"], rtol=1e-5, atol=1e-6, what="checkpoint vs TorchScript")
    assert not np.allclose(c["logit"], p["logit"])
    ident = json.loads((tmp_path / "ckpt" / "run.json").read_text())["identity"]
    assert ident["model_fingerprint"] != json.loads((tmp_path / "plain" / "run.json").read_text())["identity"]["model_fingerprint"]


def _images(root, bad=True):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    if bad:
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def test_image_folder_skips_and_lists_unreadable_images_unless_strict(tmp_path, one_thread):
    from PIL import Image

    root = _images(tmp_path / "imgs")
    prep = tmp_path / "prep.json"
    prep.write_text(json.dumps({"mode": "L", "resize": [6, 6], "mean": [0.5], "std": [0.25]}))
    out = tmp_path / "run"
    manifest = run_job(JobConfig(out=str(out), steps=8, model="jobfactories:tiny_cnn", data=str(root),
                                 preprocess=str(prep), target="label", quiet=True))
    assert manifest["skipped"] == ["dog/broken.png"] and manifest["items"] == 6
    s = _open(out)
    assert (s["label"] == [0, 0, 0, 1, 1, 1]).all()
    # the preprocessing is applied as recorded: grey, resized, normalised
    with Image.open(root / "cat" / "0.png") as im:
        a = np.asarray(im.convert("L").resize((6, 6), Image.BILINEAR), dtype=np.float32)
    assert_close(s["preview_inputs"][0, 0], (a / 255 - 0.5) / 0.25, rtol=1e-6, atol=1e-6, what="preprocessed")
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["preprocess"]["resize"] == [6, 6] and run["skipped"] == ["dog/broken.png"]
    with pytest.raises(JobError, match="unreadable image .*broken.png"):
        run_job(JobConfig(out=str(tmp_path / "strict"), steps=8, model="jobfactories:tiny_cnn", data=str(root),
                          preprocess=str(prep), strict=True, quiet=True))
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "data path not found: /no/such/folder"),
    (["--method", "nope"], "method must be one of"),
    (["--model", "jobfactories:no_such_factory"], "has no attribute 'no_such_factory'"),
    (["--model", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["--model", "resnet"], "module:factory, a torch.export .pt2 or a TorchScript file"),
    (["--data", "jobfactories:not_a_dataset", "--model", "jobfactories:tiny_cnn"], "map-style torch Dataset"),
    (["--model", "jobfactories:wider_cnn", "--checkpoint", "CKPT"], "does not fit model jobfactories:wider_cnn"),
    (["--checkpoint", "CKPT"], "checkpoint needs model"),
    (["--set", "no_such_setting=1"], "its settings are: n_steps, schedule"),
    (["--model", "jobfactories:tiny_cnn"], "the model failed on the first batch of the data (inputs of shape (1, 8, 8))"),
    (["--target", "label", "--data", "NPY", "--model", "jobfactories:tiny_cnn"], "item 0 has no label"),
])
def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path, capsys, args, message):
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt")
    np.save(tmp_path / "x.npy", tiny_dataset().tensors[0].numpy())
    args = [str(tmp_path / "w.pt") if a == "CKPT" else str(tmp_path / "x.npy") if a == "NPY" else a for a in args]
    out = tmp_path / "run"
    assert main(["attribute", "--out", str(out), "--quiet", "--steps", "8"] + args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("pathattr attribute: error:"), err
    assert not out.exists()


def test_bad_numbers_are_refused_by_name():
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        JobConfig(out="x", chunk_size=0).check()
    with pytest.raises(ValueError, match="store_dtype must be one of"):
        JobConfig(out="x", store_dtype="int8").check()
    with pytest.raises(TypeError, match="batch_size must be an int"):
        JobConfig(out="x", batch_size=2.5).check()


def test_progress_json_lines_and_report(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    assert main(["attribute", "--out", str(out), "--steps", "8", "--limit", "24", "--chunk-size", "8",
                 "--log-json"]) == 0
    cap = capsys.readouterr()
    events = [json.loads(line) for line in cap.out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["start", "chunk", "chunk", "chunk", "done"]
    assert all(e["items_per_s"] > 0 for e in events if e["event"] == "chunk")
    assert "item/s" in cap.err and "pathattr attribute: 24 items" in cap.out  # tqdm bar and summary line
    (out / "metrics.json").write_text(json.dumps({"insertion_auc": {"mean": 0.625, "median": 0.5}}))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "insertion_auc.mean" in page and "0.625" in page
    assert "items/s" in page and "n_steps" in page and "complete: 24 items in 3 chunks" in page
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert png and len(png.group(1)) > 2000
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a pathattr run folder" in capsys.readouterr().err
