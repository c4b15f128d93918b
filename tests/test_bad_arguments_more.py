"""Property tests, continued: the metrics, the reference sets and banks, quadrature and
CertaintyModel. Same rules as test_bad_arguments.py (tests/badargs.py)."""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

import pathattr as pa
import pathattr.metrics as pm
from badargs import (signature_tests, JUNK, NONFINITE, OBJECTS, Counting, Sig, choices, counts, flags, meta, models,
                     nonfinite_tensor, reals_outside, targets, wrong_dtype_tensor)
from pathattr.engine import schedule as schedules
from pathattr.engine.checks import MAX_STEPS

B, K = 2, 4  # images and classes
IMG = (B, 3, 8, 8)
X4 = torch.rand(IMG)
A4 = torch.randn(IMG)
U8 = (torch.rand(IMG) * 255).to(torch.uint8)
SEEDS = counts(minimum=0, maximum=2 ** 64 - 1)
ROWS = counts(huge=False)


def metric_make(fn, images=X4, **valid):
    def make():
        m = Counting(d_in=3 * 8 * 8, classes=K)
        return fn, dict(model=m, attributions=A4.clone(), target=None, **valid, **{
            "images" if images is U8 else "inputs": images.clone()}), lambda: m.calls
    return make


IMAGES = st.one_of(JUNK, st.none(), st.just(X4.numpy()), st.just(X4[0]), st.just(torch.zeros(0, 3, 8, 8)),
                   wrong_dtype_tensor(IMG), nonfinite_tensor(IMG), meta(IMG))
ATTRIBUTIONS = st.one_of(JUNK, st.none(), st.sampled_from([A4[:, :, :7], A4[:1], A4[:, 0, 0], torch.zeros(B, 8, 8, 2)]),
                         nonfinite_tensor(IMG), wrong_dtype_tensor(IMG, (torch.bool, torch.complex64)), meta(IMG))
BASELINE = st.one_of(OBJECTS, st.text(max_size=3), st.booleans(), NONFINITE,
                     st.sampled_from([(B + 1, 3, 8, 8), (B, 3, 8, 7), (5,)]).map(torch.zeros),
                     wrong_dtype_tensor(IMG, (torch.bool, torch.complex64)), nonfinite_tensor(IMG), meta(IMG))
PIC_IMAGES = st.one_of(JUNK, st.none(), st.just(X4), st.just(U8[0]), st.just(U8[:, :2]), st.just(U8[:, :, :1]),
                       st.just(U8.to(torch.int16)), st.just(U8.numpy().astype(np.float32)))
THRESHOLDS = st.one_of(JUNK, st.none(), st.integers(), st.just([]), st.lists(NONFINITE, min_size=1, max_size=2),
                       st.lists(st.sampled_from(["0.5", True, None, 0.0, 1.0, 1.5, -0.2]), min_size=1, max_size=3),
                       st.just([0.5, 0.2]), st.just([0.2, 0.2]))
FRACTIONS = st.one_of(JUNK, st.none(), st.integers(), st.just([]), st.lists(NONFINITE, min_size=1, max_size=2),
                      st.lists(st.sampled_from(["0.5", True, None, 0.0, 1.0, 1.5, -0.2]), min_size=1, max_size=3))
MASKS = st.one_of(JUNK, st.none(), st.sampled_from([torch.ones(B, 8, 7, dtype=torch.bool), torch.ones(B + 1, 8, 8),
                                                    torch.full((B, 8, 8), 0.5), torch.full((B, 8, 8), math.nan),
                                                    torch.ones(B, 8, 8, dtype=torch.complex64),
                                                    torch.ones(B, 8, 8, device="meta")]))
RANDOM_MASKS = st.one_of(OBJECTS, st.sampled_from([np.ones((B, 8, 8)), np.ones((B, 8, 7), bool),
                                                   torch.ones(B + 1, 8, 8, dtype=torch.bool), np.ones((B, 8, 8), int)]))
DEVICES = st.one_of(st.sampled_from(["meta", "cuda:0", "nonsense", "cpu:x"]), st.integers(0, 7), st.booleans(),
                    st.floats(), OBJECTS)


def reference_sets(d=6):
    ds = torch.utils.data.TensorDataset
    return st.one_of(JUNK, st.none(), st.floats(), st.just(torch.tensor(1.0)),
                     wrong_dtype_tensor((4, d), (torch.int64, torch.bool, torch.complex64)),
                     nonfinite_tensor((4, d)), meta((4, d)), st.just(torch.zeros(0, d)),
                     st.just(ds(torch.zeros(0, d))))


def bank_make():
    m = Counting()
    return pa.build_reference_bank, dict(model=m, dataset=torch.randn(12, 6), n_neighbourhoods=2, n_references=2,
                                         seed=0, batch_size=256, n_init=1), lambda: m.calls


SIGNATURES = [
    Sig("insertion_deletion", metric_make(pm.insertion_deletion),
        dict(model=models(), inputs=IMAGES, attributions=ATTRIBUTIONS, target=targets(B, K), baseline=BASELINE,
             pixels_per_step=counts(none_ok=True, huge=False),
             games=st.one_of(choices(("insertion", "deletion")).filter(lambda v: not isinstance(v, str) or v),
                             st.just([]), st.lists(st.sampled_from(["insert", 1, None]), min_size=1, max_size=2)),
             blur_kernel=st.one_of(ROWS, st.integers(1, 20).map(lambda k: 2 * k)),
             blur_sigma=reals_outside(0, math.inf, lo_closed=False), batch_size=ROWS)),
    Sig("diffid", metric_make(pm.diffid),
        dict(model=models(), inputs=IMAGES, attributions=ATTRIBUTIONS, target=targets(B, K), fractions=FRACTIONS,
             batch_size=ROWS)),
    Sig("pic", metric_make(pm.pic, images=U8, thresholds=(0.1, 0.5), num_data_points=20),
        dict(model=models(), images=PIC_IMAGES, attributions=ATTRIBUTIONS, target=targets(B, K),
             random_mask=RANDOM_MASKS, seed=counts(minimum=0, huge=False),
             preprocess=st.one_of(JUNK, st.none(), st.integers()), thresholds=THRESHOLDS,
             min_pred_value=reals_outside(-math.inf, math.inf), keep_monotonous=flags(),
             num_data_points=counts(maximum=10 ** 6), random_fraction=reals_outside(0, 1, hi_closed=False),
             device=DEVICES, batch_size=ROWS)),
    Sig("localisation", lambda: (pm.localisation, dict(attributions=A4.clone(), masks=torch.ones(B, 8, 8) > 0,
                                                       sign="positive", tolerance=0.0), lambda: 0),
        dict(attributions=ATTRIBUTIONS, masks=MASKS, sign=choices(("positive", "absolute")),
             tolerance=reals_outside(0, math.inf)), runs_model=False),
    Sig("distribution_baseline", lambda: (pa.distribution_baseline, dict(references=torch.rand(4, 6), n_baselines=None,
                                                                         seed=0), lambda: 0),
        dict(references=reference_sets(), n_baselines=counts(none_ok=True, maximum=MAX_STEPS), seed=SEEDS),
        runs_model=False),
    Sig("build_reference_bank", bank_make,
        dict(model=models(), dataset=reference_sets(), n_neighbourhoods=counts(maximum=12),
             n_references=counts(maximum=12), seed=counts(minimum=0, maximum=2 ** 32 - 1), batch_size=ROWS,
             n_init=ROWS)),
    Sig("quadrature", lambda: (pa.quadrature, dict(method="gausslegendre", n=8), lambda: 0),
        dict(method=choices(schedules.RULES), n=counts(maximum=MAX_STEPS)), runs_model=False),
    Sig("CertaintyModel", lambda: (pa.CertaintyModel, dict(net=nn.Linear(3, 2), value_channels=2,
                                                           certainty_channels=1), lambda: 0),
        dict(net=st.one_of(JUNK, st.none(), st.integers()), value_channels=ROWS,
             certainty_channels=st.one_of(ROWS, st.integers(3, 50))), runs_model=False),
]
test_bad_argument_is_refused_before_the_model_runs, test_the_valid_call_runs = signature_tests(SIGNATURES)
