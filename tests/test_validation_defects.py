"""The validation defects of issue #14, one test each (the property tests in
test_bad_arguments*.py cover the same ground at random; these pin the reported cases)."""
from __future__ import annotations

import math

import pytest
import torch

import pathattr as pa
from badargs import Counting, CountingTokens
from conftest import assert_close
from pathattr.engine.checks import MAX_STEPS


@pytest.fixture
def bank(tmp_path):
    torch.manual_seed(0)
    b = pa.build_reference_bank(Counting(), torch.randn(16, 6), n_neighbourhoods=2, n_references=2, n_init=1)
    path = tmp_path / "bank.pt"
    b.save(path)
    return b, path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing_key", "not_a_tensor"])
def test_bank_load_bad_file_is_a_value_error_naming_path(bank, tmp_path, damage):
    _, path = bank
    raw = path.read_bytes()
    bad = tmp_path / "bad.pt"
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x80\x04not a bank at all" * 10)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        data = torch.load(path, weights_only=True)
        if damage == "missing_key":
            del data["densities"]
        else:
            data["centres"] = [[0.0, 1.0]]
        torch.save(data, bad)
    with pytest.raises(ValueError, match=r"path '.*bad\.pt' is not a valid pathattr LPI reference bank"):
        pa.ReferenceBank.load(bad)


@pytest.mark.parametrize("part", ["references", "densities", "centres"])
def test_bank_with_nan_is_refused_naming_bank_not_the_model(bank, tmp_path, part):
    b, path = bank
    data = torch.load(path, weights_only=True)
    data[part] = data[part].clone()
    data[part].view(-1)[0] = math.nan
    torch.save(data, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"is not a valid pathattr LPI reference bank: its {part} contain NaN"):
        pa.ReferenceBank.load(tmp_path / "nan.pt")
    getattr(b, part).view(-1)[0] = math.nan  # the same bank in memory, modified in place
    model = Counting()
    with pytest.raises(ValueError, match=f"bank is not a valid pathattr LPI reference bank: its {part} contain NaN"):
        pa.local_path_integration(model, torch.rand(2, 6), b, target=0)
    assert model.calls == 0


def test_bank_densities_must_sum_to_one(bank):
    b, _ = bank
    b.densities = b.densities * 2
    with pytest.raises(ValueError, match="bank is not a valid pathattr LPI reference bank: densities"):
        pa.local_path_integration(Counting(), torch.rand(2, 6), b, target=0)


def test_icg_empty_batch_has_the_certainty_shape():
    net = Counting(d_in=3 * 4)  # values (B, 2, 4) + certainty (B, 1, 4)
    model = pa.CertaintyModel(net, value_channels=2)
    full = pa.integrated_certainty_gradients(model, torch.rand(3, 2, 4), target=0, n_steps=4)
    empty = pa.integrated_certainty_gradients(model, torch.rand(0, 2, 4), target=0, n_steps=4)
    assert full.shape == (3, 1, 4)
    assert empty.shape == (0, 1, 4)


def test_bshap_feature_mask_broadcasts_like_captum():
    """(1, 1, H, W) groups for (B, C, H, W) inputs: every channel of a pixel in its group,
    the same numbers as the mask written out at full shape (Captum's broadcasting)."""
    torch.manual_seed(0)
    model = Counting(d_in=2 * 3 * 3).double()
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    groups = torch.tensor([[0, 0, 1], [0, 2, 1], [3, 3, 1]]).view(1, 1, 3, 3)
    small = pa.bshap(model, x, target=1, feature_mask=groups)
    full = pa.bshap(model, x, target=1, feature_mask=groups.expand(1, 2, 3, 3).contiguous())
    assert_close(small, full, rtol=0, atol=0, what="BShap with a broadcast mask")
    h_w = pa.bshap(model, x, target=1, feature_mask=groups[0, 0])  # (H, W): right-aligned like torch
    assert_close(h_w, full, rtol=0, atol=0, what="BShap with an (H, W) mask")
    with pytest.raises(ValueError, match="feature_mask of shape .* does not broadcast"):
        pa.bshap(model, x, target=1, feature_mask=torch.zeros(1, 3, 3, 3, dtype=torch.long))


def test_token_id_baseline_must_be_whole():
    model = CountingTokens()
    ids = torch.randint(0, 10, (2, 5))
    for bad in (0.5, torch.full((2, 5), 2.5)):
        with pytest.raises(ValueError, match="baselines must hold whole numbers"):
            pa.layer_integrated_gradients(model, model.embed, ids, baselines=bad, target=0)
    assert model.calls == 0
    a = pa.layer_integrated_gradients(model, model.embed, ids, baselines=3.0, target=0, n_steps=4)
    b = pa.layer_integrated_gradients(model, model.embed, ids, baselines=torch.full((2, 5), 3), target=0, n_steps=4)
    assert_close(a, b, rtol=0, atol=0, what="a whole-number baseline is the token")


@pytest.mark.parametrize("fn", [pa.integrated_gradients, pa.integrated_decision_gradients,
                                pa.left_integrated_gradients])
@pytest.mark.parametrize("target", [2 ** 70, [0, 2 ** 64], -2 ** 70])
def test_huge_target_is_a_value_error(fn, target):
    model = Counting()
    with pytest.raises(ValueError, match="target"):
        fn(model, torch.rand(2, 6), target=target)
    assert model.calls == 0


@pytest.mark.parametrize("call", [
    lambda m: pa.integrated_gradients(m, torch.rand(2, 6), target=0, n_steps=10 ** 12),
    lambda m: pa.integrated_certainty_gradients(pa.CertaintyModel(m, 5), torch.rand(2, 5), target=0, n_steps=10 ** 12),
    lambda m: pa.integrated_decision_gradients(m, torch.rand(2, 6), target=0, n_probe=10 ** 12),
    lambda m: pa.expected_gradients(m, torch.rand(2, 6), torch.rand(4, 6), n_references=10 ** 12),
    lambda m: pa.bshap(m, torch.rand(2, 6), target=0, n_permutations=10 ** 12, max_exact_features=2),
])
def test_unbounded_steps_are_refused(call):
    model = Counting()
    with pytest.raises(ValueError, match=f"at most {MAX_STEPS}"):
        call(model)
    assert model.calls == 0


def test_quadrature_refuses_bools_and_huge_n():
    with pytest.raises(TypeError, match=r"\bn\b"):
        pa.quadrature("riemann_left", True)
    with pytest.raises(ValueError, match=f"n must be at most {MAX_STEPS}"):
        pa.quadrature("gausslegendre", 10 ** 12)
    with pytest.raises(ValueError, match="method"):
        pa.quadrature("simpson", 4)


def test_device_is_checked_before_values():
    """NaN inputs to a model on another device: the device is the error (checking the
    values first would read a tensor the model cannot share, and cost a reduction)."""
    model = Counting().to("meta")
    x = torch.rand(2, 6)
    x[0, 0] = math.nan
    with pytest.raises(ValueError, match="model is on meta but inputs are on cpu"):
        pa.integrated_gradients(model, x, target=0)
    with pytest.raises(ValueError, match="model is on meta"):
        pa.layer_integrated_gradients(model, model.lin1, x, target=0)
    cpu = Counting()
    with pytest.raises(ValueError, match="baselines is on meta"):
        pa.integrated_gradients(cpu, x, baselines=torch.zeros(2, 6, device="meta"), target=0)
    with pytest.raises(ValueError, match="inputs is on the meta device"):  # a model without parameters
        pa.integrated_gradients(lambda t: t, torch.zeros(2, 6, device="meta"), target=0)


def test_prune_and_measure_scores_of_the_wrong_length():
    model = Counting()
    x = torch.rand(2, 6)
    region = torch.tensor([1, 1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"scores must have the layer's shape \(8,\)"):
        pa.prune_and_measure(model, model.lin1, x, region, n_prune=2, target=0, scores=torch.rand(5))
    assert model.calls == 1  # the one forward that tells the layer's shape
    res = pa.prune_and_measure(model, model.lin1, x, region, n_prune=2, target=0, n_steps=4,
                               scores=torch.arange(8.0))
    assert sorted(res["pruned"].tolist()) == [6, 7]


def test_metrics_check_target_before_the_forward_passes():
    import pathattr.metrics as pm

    model = Counting(d_in=3 * 8 * 8, classes=4)
    x, a = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    for fn in (pm.insertion_deletion, pm.diffid):
        with pytest.raises(ValueError, match="target"):
            fn(model, x, a, target=[0, 1, 2])
    u8 = (x * 255).to(torch.uint8)
    with pytest.raises(TypeError, match="target"):
        pm.pic(model, u8, a, target=True)
    with pytest.raises(ValueError, match="device"):
        pm.pic(model, u8, a, device="meta")
    with pytest.raises(TypeError, match="thresholds"):
        pm.pic(model, u8, a, thresholds=["0.1", "0.5"])
    assert model.calls == 0


def test_explainer_errors_name_the_users_argument():
    model = Counting()
    with pytest.raises(ValueError, match=r"rule= in Explainer"):
        pa.Explainer(model, "idg", rule="simpson")  # checked even where the schedule does not use it
    with pytest.raises(ValueError, match=r"method \(the quadrature rule"):
        pa.integrated_gradients(model, torch.rand(2, 6), target=0, method="simpson")
    with pytest.raises(TypeError, match=r"Explainer\(method='ig'\) has no setting 'schedule'"):
        pa.Explainer(model, "ig", schedule="adaptive")
    with pytest.raises(ValueError, match="method must be one of"):
        pa.Explainer(model, {"ig": 1})
    with pytest.raises(ValueError, match="internal_batch_size"):  # not the Explainer's probe_batch_size
        pa.bshap(model, torch.rand(2, 6), target=0, internal_batch_size=0)


def test_warmup_checks_its_arguments():
    model = Counting()
    ex = pa.Explainer(model, "ig", n_steps=4)
    for kwargs, err, word in [(dict(example_shape=object()), TypeError, "example_shape"),
                              (dict(example_shape=(6,), batch_size=0), ValueError, "batch_size"),
                              (dict(example_shape=(6,), dtype=torch.int64), TypeError, "dtype"),
                              (dict(example_shape=(6,), device="meta"), ValueError, "device")]:
        with pytest.raises(err, match=word):
            ex.warmup(**kwargs)
    assert model.calls == 0
    ex.warmup(6, batch_size=2)  # an int is a one-dimensional shape
    assert model.calls > 0
