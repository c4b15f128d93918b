"""attribute_generation(rtol=): each continuation token's row refined to its own tolerance,
forwards shared (docs/methods.md §14, §15). fp64 tiny random GPT-2 and Llama from configs.

References: a plain-PyTorch loop (model(inputs_embeds=) and autograd, one target at a time)
on each row's own samples and weights; Captum's LayerIntegratedGradients per target over
its prefix at many Gauss-Legendre steps (checked converged) for the accuracy."""
import pytest
import torch

from conftest import assert_close

transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import pathattr.text as pt  # noqa: E402
import text_models as tm  # noqa: E402
from pathattr.text import segments  # noqa: E402

P, T = 7, 5
UNK = 1  # [UNK]: a non-zero embedding (Llama's pad row is zero: a kink at alpha = 0, see §15)
MAKERS = [tm.gpt2, tm.llama]


def _case(make, seed):
    model = make(seed=seed)
    g = torch.Generator().manual_seed(seed)
    return model, torch.randint(7, tm.VOCAB, (P,), generator=g), torch.randint(7, tm.VOCAB, (T,), generator=g)


def _plain_rows(model, ids, base, k, alphas, weights):
    """sum_s w_s dF_k/de(e_b + a_s (e_x - e_b)) * (e_x - e_b) over the prefix of target k, by
    hand: F_k = log_softmax(logits at position P + k - 1)[token P + k]."""
    emb = model.get_input_embeddings()
    with torch.no_grad():
        e_x, e_b = emb(ids[:P + k].view(1, -1)), emb(base[:P + k].view(1, -1))
    keep = ~torch.isnan(alphas)
    a, w = alphas[keep].to(e_x.dtype), weights[keep].to(e_x.dtype)
    pts = (e_b + a.view(-1, 1, 1) * (e_x - e_b)).requires_grad_(True)
    lp = torch.log_softmax(model(inputs_embeds=pts).logits[:, -1], -1)[:, ids[P + k]]
    g, = torch.autograd.grad(lp.sum(), pts)
    return (g * w.view(-1, 1, 1)).sum(0) * (e_x - e_b)[0]


@pytest.mark.parametrize("make", MAKERS, ids=["gpt2", "llama"])
def test_rows_equal_a_plain_loop_on_their_own_samples_and_converge(make, seed):
    model, p, c = _case(make, seed)
    rtol = 1e-2
    res = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=rtol, return_embeddings=True)
    ids, base = res.input_ids, res.baseline_ids
    assert res.alphas.shape[0] == T and res.n_evaluations.shape == (T,)
    for k in range(T):
        # (1) the bookkeeping: row k is exactly the rule on target k's samples, by hand
        want = _plain_rows(model, ids, base, k, res.alphas[k], res.weights[k])
        assert int((~torch.isnan(res.alphas[k])).sum()) == int(res.n_evaluations[k])
        assert_close(res.embeddings[k, :P + k], want, rtol=1e-9, atol=1e-12, what=f"row {k} on its samples")
        assert (res.matrix[k, P + k:] == 0).all()
    # (2) the accuracy: Captum's layer IG per target over its prefix, a converged fixed rule
    for k in range(T):
        prefix, pbase = ids[:P + k].view(1, -1), base[:P + k].view(1, -1)

        def f(x):
            return torch.log_softmax(model(input_ids=x).logits[:, -1], -1)

        lig = captum_attr.LayerIntegratedGradients(f, model.get_input_embeddings())
        ref = lig.attribute(prefix, pbase, target=int(c[k]), n_steps=256, method="gausslegendre")[0]
        coarse = lig.attribute(prefix, pbase, target=int(c[k]), n_steps=128, method="gausslegendre")[0]
        assert (coarse - ref).norm() <= 0.1 * rtol * ref.norm()  # the reference is converged well past rtol
        err = float((res.embeddings[k, :P + k] - ref).norm() / ref.norm())
        assert err <= 3 * rtol, f"row {k}: relative error {err:.2e} (estimate {float(res.error_estimate[k]):.2e})"
        if res.converged[k]:
            assert res.error_estimate[k] <= rtol
    assert res.converged.all()
    # completeness per row, as for the fixed rule
    assert res.delta.abs().max() <= 0.05 * res.matrix.abs().sum(1).max()


@pytest.mark.parametrize("make", MAKERS, ids=["gpt2", "llama"])
def test_forwards_are_shared_and_counted(make, seed, monkeypatch):
    from pathattr.engine.runner import ModelRunner

    model, p, c = _case(make, seed)
    rows_seen, cols_seen = [], []
    # a forward is one call, or consecutive calls over causal segments (text/segments.py): count
    # the calls that start one (no key/value cache passed in)
    h = model.register_forward_pre_hook(lambda m, a, kw: rows_seen.append(
        (kw.get("input_ids") if kw.get("input_ids") is not None else a[0]).shape[0])
        if kw.get("cache") is None else None, with_kwargs=True)
    real = ModelRunner.backward_columns

    def counted(self, f, wrt, columns=None):
        cols_seen.append(segments.columns(f).shape[1] if columns is None else len(columns))
        return real(self, f, wrt, columns)

    monkeypatch.setattr(ModelRunner, "backward_columns", counted)
    try:
        res = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-3, min_steps=17)
    finally:
        h.remove()
    total = int(res.n_evaluations.sum())
    assert res.settings["segments"] > 1
    # + h(x), h(x'), and F at both ends (one call of 2 rows), once more in segments (their check)
    assert sum(rows_seen) == res.n_forward + 6
    assert sum(cols_seen) == res.n_backward
    assert res.n_forward < total  # a forward serves every target that asked for its point
    assert res.n_forward >= int(res.n_evaluations.max())
    assert len(set(res.n_evaluations.tolist())) > 1  # each row refined on its own
    assert res.rounds > 1 and res.converged.all()
    # the same rounds in chunks of 3 points (a group split across forwards): the same samples and numbers
    small = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-3, min_steps=17,
                                    internal_batch_size=3)
    assert torch.equal(small.n_evaluations, res.n_evaluations) and small.n_forward == res.n_forward
    assert_close(small.matrix, res.matrix, rtol=1e-10, atol=1e-12, what="chunks of 3 vs the budget's chunks")
    fixed = pt.attribute_generation(model, p, continuation=c, baseline=UNK, n_steps=20)
    assert fixed.n_forward == 20 and (fixed.n_evaluations == 20).all() and fixed.converged is None
    gap = (fixed.delta.abs() / (fixed.values - fixed.baseline_values).abs())
    assert_close(fixed.error_estimate, gap, rtol=1e-12, atol=0, what="fixed rule's completeness gap")


def test_easy_rows_and_max_steps(seed):
    model, p, c = _case(tm.gpt2, seed)
    loose = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=0.9)  # generation's first round: 65
    assert loose.rounds == 1 and (loose.n_evaluations == 65).all() and loose.n_forward == 65
    assert loose.n_backward == T and loose.converged.all() and loose.settings["min_steps"] == 65
    loose = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=0.9, min_steps=17)
    assert loose.rounds == 1 and (loose.n_evaluations == 17).all() and loose.n_forward == 17
    # rows with nothing to attribute: the prompt is its own baseline and only it moves
    same = pt.attribute_generation(model, p, continuation=c, baseline=p, attribute_to="prompt", rtol=1e-3,
                                   min_steps=9)
    assert (same.matrix == 0).all() and same.converged.all() and (same.error_estimate == 0).all()
    assert (same.n_evaluations == 9).all()
    # an unreachable tolerance stops at max_steps, unconverged, with the estimate reported
    capped = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-9, min_steps=9, max_steps=25)
    assert (capped.n_evaluations <= 25).all() and (capped.n_evaluations >= 9).all()
    assert not capped.converged.any() and (capped.error_estimate > 1e-9).all()
    assert capped.n_forward <= 25 + 4 * T  # the rows' grids stay nested: at most one bisection apart
    assert capped.settings["rtol"] == 1e-9 and capped.settings["max_steps"] == 25


def test_bad_tolerance_arguments_name_themselves_before_any_model_call(seed):
    model, p, c = _case(tm.gpt2, seed)
    calls = []
    h = model.register_forward_pre_hook(lambda *a: calls.append(1))
    cases = [
        (dict(rtol=0.0), ValueError, "rtol"), (dict(rtol=1.0), ValueError, "rtol"),
        (dict(rtol=-0.1), ValueError, "rtol"), (dict(rtol="0.01"), TypeError, "rtol"),
        (dict(rtol=float("nan")), ValueError, "rtol"),
        (dict(rtol=1e-2, min_steps=2), ValueError, "min_steps"), (dict(rtol=1e-2, max_steps=3), ValueError, "max_steps"),
        (dict(rtol=1e-2, min_steps=65, max_steps=33), ValueError, "max_steps"),
        (dict(rtol=1e-2, min_steps=2.5), TypeError, "min_steps"),
        (dict(min_steps=17), ValueError, "min_steps"), (dict(max_steps=65), ValueError, "max_steps"),
    ]
    try:
        for kw, exc, match in cases:
            with pytest.raises(exc, match=match):
                pt.attribute_generation(model, p, continuation=c, **kw)
    finally:
        h.remove()
    assert calls == []


def test_batched_backward_of_a_subset_of_columns_agrees(seed, monkeypatch):
    from pathattr.engine.runner import ModelRunner

    model, p, c = _case(tm.llama, seed)
    looped = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-3, min_steps=17)
    assert looped.rounds > 1  # later rounds ask subsets of the columns
    monkeypatch.setattr(ModelRunner, "batched_columns", True)  # one vmapped backward over the asked columns
    batched = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-3, min_steps=17)
    assert torch.equal(batched.n_evaluations, looped.n_evaluations)
    assert_close(batched.matrix, looped.matrix, rtol=1e-9, atol=1e-11, what="batched vs looped column backward")


def test_a_deadline_stops_refining_after_the_first_round(seed):
    import time

    model, p, c = _case(tm.gpt2, seed)
    late = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-7, min_steps=17,
                                   deadline=time.monotonic())
    assert late.rounds == 1 and (late.n_evaluations == 17).all() and not late.converged.any()
    free = pt.attribute_generation(model, p, continuation=c, baseline=UNK, rtol=1e-7, min_steps=17, max_steps=65)
    assert free.rounds > 1
    with pytest.raises(TypeError, match="deadline"):
        pt.attribute_generation(model, p, continuation=c, rtol=0.01, deadline="soon")
