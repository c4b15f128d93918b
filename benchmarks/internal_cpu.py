"""CPU benchmark: neuron, layer and ICG attributions against Captum and the bare cost.

    python -m benchmarks.internal_cpu [--repeat 5] [--threads 1] [--out benchmarks/results/internal-cpu-DATE.json]

One torch thread by default: on this project's shared 2-core VM, two threads under other
developers' load made every provider 5-10x slower and reordered them from run to run.

Cases (batch 32 on CPU; providers sampled round-robin, so ratios within one run mean
something; absolute times are for this machine):
  neurons  DigitsCNN, region = the left half, layer features[3] (32x8x8 = 2,048
           neurons), 50 steps: neuron_region_attribution with forward_ad and with
           double_backward (all neurons at once), Captum NeuronConductance for ONE
           neuron (it does one neuron per call), and pathattr IG (same steps) as the floor.
  layer    a small transformer (vocab 50, 16 tokens, dim 32), embedding output, 50 steps:
           layer_integrated_gradients vs Captum LayerIntegratedGradients.
  icg      the bundled certainty CNN, 100 midpoint steps: integrated_certainty_gradients
           vs Captum IntegratedGradients on the joint (values, c) input with baseline
           (x, c = 0) (the same computation) and pathattr IG on the joint input.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
from torch import nn

import pathattr as pa
from pathattr.data.certainty_task import load_certainty_model, make_patches_data
from pathattr.data.digits import load_digits_data, load_digits_model

from .harness import Row, environment, table, time_interleaved, write_results


class _Transformer(nn.Module):
    def __init__(self, vocab=50, dim=32, seq=16, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.3)
        self.block = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids):
        return self.head(self.block(self.embed(ids) + self.pos).mean(1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path,
                   default=Path("benchmarks/results") / f"internal-cpu-{datetime.date.today().isoformat()}.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from captum.attr import IntegratedGradients, LayerIntegratedGradients, NeuronConductance

    torch.manual_seed(0)
    B, rows = 32, []
    # neurons
    model = load_digits_model()
    x = load_digits_data("test")[0][:B]
    target = model(x).argmax(1)
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    layer = model.features[3]
    provs = {
        "pathattr_forward_ad": lambda: pa.neuron_region_attribution(model, layer, x, mask, target=target, jvp="forward_ad"),
        "pathattr_double_backward": lambda: pa.neuron_region_attribution(model, layer, x, mask, target=target,
                                                                         jvp="double_backward"),
        "captum_one_neuron": lambda: NeuronConductance(model, layer).attribute(x, (0, 3, 3), target=target,
                                                                               method="gausslegendre"),
        "pathattr_ig_floor": lambda: pa.integrated_gradients(model, x, target=target),
    }
    for name, s in time_interleaved(provs, repeat=a.repeat).items():
        rows.append(Row("neurons digits B32", name, B, 50, "cpu", s))
    # layer
    tr = _Transformer().eval()
    ids = torch.randint(1, 50, (B, 16))
    tgt = tr(ids).argmax(1)
    provs = {
        "pathattr_layer_ig": lambda: pa.layer_integrated_gradients(tr, tr.embed, ids, target=tgt),
        "captum_layer_ig": lambda: LayerIntegratedGradients(tr, tr.embed).attribute(ids, target=tgt,
                                                                                     method="gausslegendre"),
    }
    for name, s in time_interleaved(provs, repeat=a.repeat).items():
        rows.append(Row("layer transformer B32", name, B, 50, "cpu", s))
    # icg
    cm = load_certainty_model()
    values, y = make_patches_data(B, seed=1)
    joint1, joint0 = cm.combine(values, 1.0), cm.combine(values, 0.0)
    provs = {
        "pathattr_icg": lambda: pa.integrated_certainty_gradients(cm, values, target=y),
        "captum_ig_joint": lambda: IntegratedGradients(cm).attribute(joint1, joint0, target=y, n_steps=100,
                                                                     method="riemann_middle"),
        "pathattr_ig_joint": lambda: pa.integrated_gradients(cm, joint1, joint0, target=y, n_steps=100,
                                                             method="riemann_middle"),
    }
    for name, s in time_interleaved(provs, repeat=a.repeat).items():
        rows.append(Row("icg certainty-cnn B32", name, B, 100, "cpu", s))
    print(table(rows, {"neurons digits B32": "pathattr_ig_floor", "layer transformer B32": "captum_layer_ig",
                       "icg certainty-cnn B32": "captum_ig_joint"}))
    write_results(rows, a.out, environment(), {"batch": B, "repeat": a.repeat, "threads": a.threads})


if __name__ == "__main__":
    main()
