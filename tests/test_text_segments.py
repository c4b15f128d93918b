"""Generation attribution's causal segments (text/segments.py) against the single forward
in fp64: the same values and per-token gradients, each token's backward pruned to what its
value depends on, and the single forward kept where the model's cache path is missing or
gives other numbers."""
import pytest
import torch
from torch import nn

from conftest import assert_close

transformers = pytest.importorskip("transformers")

import pathattr.text as pt  # noqa: E402
from pathattr.engine.runner import ModelRunner  # noqa: E402
from pathattr.layers.hooks import LayerReplaced  # noqa: E402
from pathattr.text import segments  # noqa: E402
from pathattr.text.teacher_forced import Values  # noqa: E402
import text_models as tm  # noqa: E402

MAKERS = [tm.gpt2, tm.llama]


def _runners(model, P, T, seed, rows=3):
    """The single forward and the segmented one over the same sequence, and `rows` random
    points between zero and the sequence's embeddings."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, tm.VOCAB, (P + T,), generator=gen)
    layer = model.get_input_embeddings()
    one = ModelRunner(LayerReplaced(Values(model, ids[P:], "log_prob"), layer))
    seg = ModelRunner(segments.SegmentedValues(model, layer, P, ids[P:], "log_prob", segments.cache_keyword(model)))
    x_in = ids[:-1].view(1, -1)
    h = layer(x_in).detach()
    pts = torch.rand(rows, 1, 1, generator=gen, dtype=h.dtype) * h
    return one, seg, pts, x_in.expand(rows, -1)


def test_bounds_cover_the_targets_in_short_segments():
    for first in (0, 3, 31):
        for T, size in ((1, 1), (2, 1), (5, 3), (16, 8), (17, 6), (40, 8), (64, 8), (100, 13), (256, 32)):
            ends = segments.bounds(first, T)
            sizes = [b - a for a, b in zip([first] + ends[:-1], ends)]
            assert ends[-1] == first + T and all(s >= 1 for s in sizes)
            assert max(sizes) == size and len(ends) <= segments.SEGMENTS_MAX
            assert all(s == sizes[0] for s in sizes[:-1])  # equal, the last the rest


@pytest.mark.parametrize("make", MAKERS, ids=["gpt2", "llama"])
@pytest.mark.parametrize("P,T", [(1, 3), (5, 1), (7, 5), (4, 19)])
def test_segments_give_the_single_forwards_values_and_gradients(make, P, T, seed):
    model = make(seed=seed)
    one, seg, pts, ids = _runners(model, P, T, seed)
    pts1, pts2 = pts.clone().requires_grad_(True), pts.clone().requires_grad_(True)
    f1, fs = one.call(pts1, (ids,)), seg.call(pts2, (ids,))
    assert isinstance(fs, tuple) and len(fs) == len(segments.bounds(P - 1, T))
    assert_close(segments.columns(fs), f1, rtol=1e-10, atol=1e-12, what="values")
    g1, gs = one.backward_columns(f1, pts1), seg.backward_columns(fs, pts2)
    assert g1.abs().max() > 1e-3
    assert_close(gs, g1, rtol=1e-9, atol=1e-12, what="gradients")
    # some columns, in another order, and the batched (vmapped) form: the same numbers
    cols = list(range(T))[::-1][:max(1, T // 2)]
    for batched in (False, True):
        seg.batched_columns = batched
        p = pts.clone().requires_grad_(True)
        assert_close(seg.backward_columns(seg.call(p, (ids,)), p, cols), g1[cols], rtol=1e-9, atol=1e-12,
                     what=f"columns {cols}, batched={batched}")


def test_a_tokens_backward_skips_the_top_layer_of_other_segments(seed):
    model = tm.gpt2(seed=seed)  # 2 layers
    P, T = 6, 24  # the prompt's first 5 positions, then 3 segments of 8 target positions
    one, seg, pts, ids = _runners(model, P, T, seed)
    widths = []
    hook = model.transformer.h[-1].mlp.register_full_backward_hook(lambda m, gi, go: widths.append(go[0].shape[1]))
    try:
        p = pts.clone().requires_grad_(True)
        for k in (0, 9, 23):  # a backward frees its graph: a forward each
            blocks = seg.call(p, (ids,))
            widths.clear()
            seg.backward_columns(blocks, p, [k])
            assert widths == [8]  # the top layer's MLP ran once, over this token's own segment
        blocks = seg.call(p, (ids,))
        widths.clear()
        seg.backward_columns(segments.columns(blocks), p, [0])  # the same values concatenated: every segment
        assert widths == [8, 8, 8]  # (the prompt segment yields no value: its top layer is never run back)
    finally:
        hook.remove()


class _NoCache(nn.Module):
    """A causal LM whose forward takes no key/value cache."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config = model, model.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids):
        return self.inner(input_ids=input_ids, use_cache=False)


class _ForgetsCache(_NoCache):
    """Takes a cache and ignores it: each segment would see no earlier position."""

    def forward(self, input_ids, cache=None, use_cache=False):
        return self.inner(input_ids=input_ids, use_cache=True)


@pytest.mark.parametrize("wrap", [_NoCache, _ForgetsCache], ids=["no_cache", "forgets_cache"])
def test_the_single_forward_is_kept_where_segments_are_missing_or_differ(wrap, seed):
    model = tm.llama(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    p = torch.randint(5, tm.VOCAB, (6,), generator=gen)
    c = torch.randint(5, tm.VOCAB, (9,), generator=gen)
    kw = dict(continuation=c, baseline=1, n_steps=8)
    plain = pt.attribute_generation(model, p, **kw)
    wrapped = pt.attribute_generation(wrap(model), p, **kw)
    assert plain.settings["segments"] == 1 + len(segments.bounds(5, 9))
    assert wrapped.settings["segments"] == 1
    assert_close(wrapped.matrix, plain.matrix, rtol=1e-9, atol=1e-12, what="single forward vs segments")


def test_agreement_allows_rounding_not_structure():
    one = torch.tensor([[-3.0, -4.5], [-2.0, -6.0]], dtype=torch.float32)
    assert segments.agrees(one + 1e-5, one)
    assert not segments.agrees(one + 0.5, one)
    assert not segments.agrees(one.double() + 1e-9, one.double()[:, :1])
    assert not segments.agrees(torch.full_like(one, float("nan")), one)


@pytest.mark.parametrize("segmented", [False, True])
def test_a_chunk_runs_only_the_positions_its_asked_tokens_see(segmented, seed, monkeypatch):
    from pathattr.text import teacher_forced

    model = tm.gpt2(seed=seed)
    P, T = 5, 12
    one, _, pts, ids = _runners(model, P, T, seed)
    tf = teacher_forced.TeacherForced(model, model.get_input_embeddings(), P, one.model.model.cont, "log_prob", None)
    assert tf.check_segments(pts[:2], ids[:2], one.call(pts[:2], (ids[:2],))) > 1
    tf.segmented = segmented
    monkeypatch.setattr(teacher_forced, "SEGMENTS_FROM_COLUMNS", 1)
    p1 = pts.clone().requires_grad_(True)
    f1 = one.call(p1, (ids,))
    g1 = one.backward_columns(f1, p1)
    lengths = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: lengths.append(kw["input_ids"].shape[1]),
                                           with_kwargs=True)
    try:
        for cols in ([3, 1], [0], list(range(T))):
            lengths.clear()
            p = pts.clone().requires_grad_(True)
            f, g = tf.run(p, ids, cols)
            t = max(cols) + 1
            assert sum(lengths) == P - 1 + t  # positions up to the last asked token's, no further
            assert (len(lengths) > 1) == (segmented and P > 1)
            assert_close(f, f1[:, :t], rtol=1e-10, atol=1e-12, what=f"values, cols {cols}")
            assert_close(g, g1[cols], rtol=1e-9, atol=1e-12, what=f"gradients, cols {cols}")
    finally:
        hook.remove()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_segments_on_the_gpu_equal_the_single_forward(dtype, seed, monkeypatch):
    from pathattr.text import teacher_forced

    model = tm.llama(seed=seed, hidden=64).to("cuda", dtype)
    gen = torch.Generator().manual_seed(seed)
    p = torch.randint(5, tm.VOCAB, (20,), generator=gen).cuda()
    c = torch.randint(5, tm.VOCAB, (16,), generator=gen).cuda()
    seg = pt.attribute_generation(model, p, continuation=c, baseline=1, n_steps=16)
    monkeypatch.setattr(teacher_forced, "cache_keyword", lambda m: None)
    one = pt.attribute_generation(model, p, continuation=c, baseline=1, n_steps=16)
    assert seg.settings["segments"] > 1 and one.settings["segments"] == 1
    scale = one.matrix.float().abs().max()
    err = (seg.matrix.float() - one.matrix.float()).abs().max() / scale
    assert err <= (1e-4 if dtype == torch.float32 else 3e-2), f"segments vs one forward on the GPU: {err:.2e}"
