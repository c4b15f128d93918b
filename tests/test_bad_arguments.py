"""Property tests: random bad values for every argument of every attribution entry point.

One bad argument at a time, the others valid: a ValueError or TypeError that names the
argument, and no model call before it (see tests/badargs.py). The table is one `Sig`
per signature; adding an argument or a signature is one line. The metrics, banks and
other entries are in test_bad_arguments_more.py.
"""
from __future__ import annotations

import copy
import math

import torch
from hypothesis import strategies as st
from torch import nn

import pathattr as pa
from badargs import (signature_tests, JUNK, NONFINITE, OBJECTS, Counting, CountingTokens, Sig, baselines,
                     broadcast_misfits, choices, counts, dtypes, flags, float_inputs, meta, models, nonfinite_tensor,
                     reals_outside, targets, wrong_dtype_tensor)
from pathattr import methods
from pathattr.engine import schedule as schedules
from pathattr.engine.checks import MAX_STEPS
from pathattr.layers.neurons import JVP_MODES

B, D, C = 2, 6, 3
X = torch.rand(B, D)
RULES = schedules.RULES
SEEDS = counts(minimum=0, maximum=2 ** 64 - 1)
OUTPUTS = st.one_of(st.floats(), OBJECTS, st.lists(st.integers(), max_size=2))  # strings may be keys
ROWS = counts(none_ok=True, huge=False)  # a chunk size: any positive int, None = default


def engine_args(shape=(B, D), inputs=None):
    """Bad values for the arguments every straight-path function shares."""
    return dict(
        model=models(), inputs=inputs if inputs is not None else float_inputs(shape), baselines=baselines(shape),
        target=targets(shape[0], C), n_steps=counts(maximum=MAX_STEPS), method=choices(RULES),
        internal_batch_size=ROWS, return_convergence_delta=flags(), return_details=flags(), output=OUTPUTS,
        autocast=dtypes((None, torch.bfloat16, torch.float16)), backend=choices(("auto", "triton", "torch")),
        accumulate_dtype=dtypes((None, torch.float32, torch.float64)))


def fresh(fn, **valid):
    """make(): the function, valid kwargs (target None: it resolves by a forward, so a late
    check would show as a model call) and the model's call counter."""
    def make():
        m = Counting()
        return fn, dict(model=m, inputs=X.clone(), target=None, **valid), lambda: m.calls
    return make


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


IDG_ONLY = dict(schedule=choices(("adaptive", "paper", "uniform")), n_probe=counts(none_ok=True, maximum=MAX_STEPS),
                importance=choices(("exact", "finite_difference")), normalize=choices(("none", "completeness")),
                probe_batch_size=ROWS)


def reference_sets(shape=(B, D)):
    """Anything but a finite floating reference set (R, *input_shape), tensor or Dataset."""
    d = shape[1]
    ds = torch.utils.data.TensorDataset
    return st.one_of(JUNK, st.none(), st.floats(), st.just(torch.tensor(1.0)), st.just(torch.zeros(d)),
                     wrong_dtype_tensor((4, d), (torch.int64, torch.bool, torch.complex64)),
                     nonfinite_tensor((4, d)), st.sampled_from([(4, d + 1), (4, d, 2), (4, d - 1)]).map(torch.zeros),
                     meta((4, d)),
                     st.just(torch.zeros(0, d)), st.just(ds(torch.zeros(4, d + 1))), st.just(ds(torch.zeros(0, d))),
                     st.just(pa.distribution_baseline(torch.zeros(3, d))))


def _bank_for(model):
    torch.manual_seed(0)
    return pa.build_reference_bank(model, torch.randn(16, D), n_neighbourhoods=2, n_references=2, n_init=1)


BANK = _bank_for(Counting())
OTHER_BANK = _bank_for(Counting(seed=1))
NAN_BANK = copy.copy(BANK)
NAN_BANK.references = BANK.references.clone()
NAN_BANK.references[0, 1, 2] = math.nan
SHAPE_BANK = copy.copy(BANK)
SHAPE_BANK.references = torch.rand(2, 2, D + 1)
DENSITY_BANK = copy.copy(BANK)
DENSITY_BANK.densities = -BANK.densities
BANKS = st.one_of(JUNK, st.none(), st.sampled_from([OTHER_BANK, NAN_BANK, SHAPE_BANK, DENSITY_BANK]))
ALPHA_RANGES = st.one_of(JUNK, st.none(), NONFINITE, st.tuples(st.floats(0.5, 1), st.floats(0, 0.5)),
                         st.tuples(NONFINITE, st.floats(0, 1)), st.tuples(st.floats(-5, -0.01), st.floats(0.5, 1)),
                         st.tuples(st.floats(0, 0.5), st.floats(1.01, 5)), st.just((0.1,)), st.just((0.1, 0.2, 0.3)),
                         st.just((True, 1.0)))


def icg_make():
    net = Counting(d_in=9)
    model = pa.CertaintyModel(net, value_channels=2)
    return (pa.integrated_certainty_gradients, dict(model=model, inputs=torch.rand(B, 2, 3), target=None, n_steps=8),
            lambda: net.calls)


def explainer_make():
    m = Counting()
    return pa.Explainer, dict(model=m, method="idg", n_steps=8), lambda: m.calls


def attribute_make(method):
    def make():
        m = Counting()
        ex = pa.Explainer(m, method, n_steps=8)
        return ex.attribute, dict(inputs=X.clone(), baselines=None, target=None, additional_forward_args=None,
                                  return_convergence_delta=False, return_details=False, deadline=None,
                                  timeout=None), lambda: m.calls
    return make


def warmup_make():
    m = Counting()
    ex = pa.Explainer(m, "ig", n_steps=4)
    return ex.warmup, dict(example_shape=(D,), batch_size=1, dtype=None, device=None, target=None,
                           baselines=None), lambda: m.calls


# A distribution baseline whose references do not fit the inputs (ig and idg take one).
MISFIT_DISTRIBUTION = st.sampled_from([pa.distribution_baseline(torch.zeros(3, D + 1)),
                                       pa.distribution_baseline(torch.utils.data.TensorDataset(torch.zeros(3, D - 1)))])
ATTRIBUTE_BAD = dict(inputs=float_inputs((B, D)), baselines=st.one_of(baselines((B, D)), MISFIT_DISTRIBUTION),
                     target=targets(B, C),
                     return_convergence_delta=flags(), return_details=flags(),
                     deadline=st.one_of(NONFINITE, st.booleans(), JUNK),
                     timeout=reals_outside(0, math.inf, none_ok=True))
SHAPES = st.one_of(JUNK.filter(lambda v: not isinstance(v, (bytes, dict))), st.none(), st.floats(),
                   st.integers(max_value=-1), st.lists(st.integers(max_value=-1), min_size=1, max_size=2),
                   st.lists(st.floats(), min_size=1, max_size=2), st.tuples(st.booleans()),
                   st.just(torch.zeros(2)))
DEVICES = st.one_of(st.sampled_from(["meta", "cuda:0", "nonsense", "cpu:x"]), st.integers(0, 7), st.booleans(),
                    st.floats(), OBJECTS)
ALL_METHOD_NAMES = tuple(methods.REGISTRY) + tuple(methods.ALIASES)


def layer_make(fn, **valid):
    def make():
        m = Counting()
        return fn, dict(model=m, layer=m.lin1, inputs=X.clone(), target=None, n_steps=8, **valid), lambda: m.calls
    return make


def token_make():
    m = CountingTokens()
    ids = torch.randint(0, 10, (B, 5))
    return (pa.layer_integrated_gradients, dict(model=m, layer=m.embed, inputs=ids, target=None, n_steps=4),
            lambda: m.calls)


LAYER_INPUTS = st.one_of(JUNK, st.none(), st.lists(st.floats(), max_size=3), st.just(torch.tensor(1.0)),
                         wrong_dtype_tensor((B, D), (torch.bool, torch.complex64)), nonfinite_tensor((B, D)),
                         meta((B, D)))
LAYER_BAD = dict(engine_args(inputs=LAYER_INPUTS), layer=st.one_of(JUNK, st.none(), st.just(nn.Linear(D, 8))),
                 attribute_to_layer_input=flags())
TOKEN_BASELINES = st.one_of(st.floats(allow_nan=True).filter(lambda v: not float(v).is_integer()),
                            st.sampled_from([torch.full((B, 5), 0.5), torch.full((B, 5), math.nan),
                                             torch.zeros(B, 5, dtype=torch.complex64), torch.zeros(B, 6, dtype=torch.long),
                                             torch.zeros(B, 5, dtype=torch.long, device="meta")]),
                            st.booleans(), OBJECTS)

REGION_MASKS = st.one_of(JUNK, st.none(), broadcast_misfits((B, D)).map(torch.ones),
                         st.sampled_from([torch.full((D,), 0.5), torch.full((D,), 2.0), torch.full((D,), math.nan),
                                          torch.ones(D, dtype=torch.complex64), torch.ones(D, device="meta")]))


def neuron_make(fn, region=True, **valid):
    def make():
        m = Counting()
        kw = dict(model=m, layer=m.lin1, inputs=X.clone(), target=None, n_steps=4, **valid)
        if region:
            kw["region_mask"] = torch.tensor([1, 1, 1, 0, 0, 0])
        return fn, kw, lambda: m.calls
    return make


# rtol mode (docs/methods.md §14): rtol in (0, 1); min_steps / max_steps only with it
TOL = dict(rtol=reals_outside(0, 1, lo_closed=False, hi_closed=False, none_ok=True),
           min_steps=counts(minimum=5, maximum=MAX_STEPS, none_ok=True),
           max_steps=counts(minimum=5, maximum=MAX_STEPS, none_ok=True))

NEURON_BAD = dict(without(LAYER_BAD, "return_convergence_delta", "autocast", "backend", "accumulate_dtype"),
                  inputs=float_inputs((B, D)), jvp=choices(JVP_MODES), **TOL)
PRUNE_BAD = dict(without(NEURON_BAD, "internal_batch_size", "jvp", "attribute_to_layer_input", "return_details",
                         *TOL),
                 region_mask=REGION_MASKS, n_prune=counts(huge=False), rank=choices(("abs", "value")),
                 scores=st.one_of(JUNK, st.lists(st.floats(), min_size=1, max_size=3), st.just(torch.tensor(True)),
                                  nonfinite_tensor((8,)), wrong_dtype_tensor((8,), (torch.bool, torch.complex64))))
PRUNE_BAD["n_prune:too_many"] = st.integers(min_value=9, max_value=2 ** 80)  # the layer has 8 neurons
PRUNE_BAD["scores:shape"] = st.sampled_from([torch.rand(5), torch.rand(B, 9), torch.rand(B + 1, 8), torch.rand(4, 4, 4)])

SIGNATURES = [
    Sig("integrated_gradients", fresh(pa.integrated_gradients, n_steps=8), dict(engine_args(), **TOL)),
    Sig("integrated_decision_gradients", fresh(pa.integrated_decision_gradients, n_steps=8),
        dict(engine_args(), **IDG_ONLY, **TOL, growth=choices(("abs", "positive")),
             placement=choices(("midpoint", "left"), none_ok=True), floor=counts(minimum=0, none_ok=True))),
    Sig("left_integrated_gradients", fresh(pa.left_integrated_gradients, n_steps=8),
        dict(engine_args(), **TOL, r=reals_outside(0, 1, lo_closed=False), threshold=choices(("baseline", "max")),
             n_probe=counts(none_ok=True, maximum=MAX_STEPS), probe_batch_size=ROWS)),
    Sig("guided_integrated_gradients", fresh(pa.guided_integrated_gradients, n_steps=8),
        dict(without(engine_args(), "method"), fraction=reals_outside(0, 1, lo_closed=False),
             max_dist=reals_outside(0, 1))),
    Sig("adversarial_gradient_integration", fresh(pa.adversarial_gradient_integration, max_iter=2, topk=2),
        dict(without(engine_args(), "baselines", "n_steps", "method", "return_convergence_delta", "output"),
             epsilon=reals_outside(0, math.inf, lo_closed=False), max_iter=counts(maximum=MAX_STEPS),
             topk=counts(huge=False, none_ok=True), seed=SEEDS, lo=reals_outside(-math.inf, math.inf, none_ok=True),
             hi=reals_outside(-math.inf, math.inf, none_ok=True), restart=flags())),
    Sig("expected_gradients", fresh(pa.expected_gradients, baselines=torch.rand(4, D), n_references=3),
        dict(without(engine_args(), "n_steps", "method"), baselines=reference_sets(),
             n_references=counts(maximum=MAX_STEPS), n_alphas=counts(maximum=MAX_STEPS), seed=SEEDS)),
    Sig("bshap", fresh(pa.bshap),
        dict(without(engine_args(), "n_steps", "method", "backend", "accumulate_dtype"),
             feature_mask=st.one_of(JUNK, wrong_dtype_tensor((B, D), (torch.float32, torch.bool, torch.complex64)),
                                    broadcast_misfits((B, D)).map(lambda s: torch.zeros(s, dtype=torch.long)),
                                    st.just(torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5]])),
                                    st.just(torch.zeros(D, dtype=torch.long, device="meta"))),
             n_permutations=counts(maximum=MAX_STEPS), max_exact_features=counts(minimum=0, maximum=20),
             seed=SEEDS)),
    Sig("local_path_integration", fresh(pa.local_path_integration, bank=BANK),
        dict(without(engine_args(), "baselines", "n_steps", "method"), bank=BANKS,
             n_alphas=counts(maximum=MAX_STEPS), alpha_range=ALPHA_RANGES, seed=SEEDS)),
    Sig("integrated_certainty_gradients", icg_make,
        dict(without(engine_args((B, 6)), "baselines"),
             inputs=st.one_of(float_inputs((B, 2, 3)), st.just(torch.rand(B, 3, 3))),
             certainty_channels=st.one_of(counts(none_ok=True, huge=False), st.integers(2, 50)))),
    Sig("Explainer", explainer_make,
        dict(model=models(), method=choices(ALL_METHOD_NAMES), output=OUTPUTS, internal_batch_size=ROWS,
             probe_batch_size=ROWS, autocast=dtypes((None, torch.bfloat16, torch.float16)),
             backend=choices(("auto", "triton", "torch")), accumulate_dtype=dtypes((None, torch.float32, torch.float64)),
             cuda_graphs=flags(), max_batch=ROWS, n_steps=counts(maximum=MAX_STEPS),
             n_probe=counts(none_ok=True, maximum=MAX_STEPS), rule=choices(RULES),
             schedule=choices(("adaptive", "paper", "uniform"))), runs_model=False),
    Sig("Explainer(idg).attribute", attribute_make("idg"), ATTRIBUTE_BAD),
    Sig("Explainer(ig).attribute", attribute_make("ig"), ATTRIBUTE_BAD),
    Sig("Explainer.warmup", warmup_make,
        dict(example_shape=SHAPES, batch_size=counts(huge=False), dtype=dtypes((None, torch.float16, torch.bfloat16,
                                                                                torch.float32, torch.float64)),
             device=DEVICES, target=targets(1, C), baselines=baselines((1, D)))),
    Sig("layer_integrated_gradients", layer_make(pa.layer_integrated_gradients), LAYER_BAD),
    Sig("layer_integrated_decision_gradients", layer_make(pa.layer_integrated_decision_gradients),
        dict(LAYER_BAD, **IDG_ONLY)),
    Sig("layer_integrated_gradients(token ids)", token_make, dict(baselines=TOKEN_BASELINES)),
    Sig("token_scores", lambda: (pa.token_scores, dict(attributions=torch.rand(B, 5, 4), dim=-1), lambda: 0),
        dict(attributions=st.one_of(JUNK, st.none(), st.just(torch.tensor(1.0)), st.just(torch.rand(B))),
             dim=st.one_of(st.integers(min_value=3), st.integers(max_value=-4), st.booleans(), st.floats(), JUNK,
                           st.none())), runs_model=False),
    Sig("neuron_region_attribution", neuron_make(pa.neuron_region_attribution),
        dict(NEURON_BAD, region_mask=REGION_MASKS, return_mode=flags())),
    Sig("neuron_conductance", neuron_make(pa.neuron_conductance, region=False), NEURON_BAD),
    Sig("prune_and_measure", neuron_make(pa.prune_and_measure, n_prune=2), PRUNE_BAD,
        calls={"n_prune:too_many": 1, "scores:shape": 1}),
]
test_bad_argument_is_refused_before_the_model_runs, test_the_valid_call_runs = signature_tests(SIGNATURES)
