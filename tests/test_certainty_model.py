"""The bundled damage-trained model (pathattr.data.certainty_task) passes the checks
of the ICG paper §A.3.1, and ICG on it behaves as the paper describes.

Measured (torch 2.13 CPU, on 500 fresh images / 500 U(0, 1) noise images; the
training script's own measurement on 1,000 each, 0.014 / 0.025, is in certainty_cnn.json):
information absence, spread of the softmax output at c = 0 over x divided by its
change between c = 0 and c = 1: 0.013 on data, 0.022 on noise
(asserted < 5 %). Neutrality: mean probabilities at c = 0 vs the prior (0.5, 0.3,
0.2), total variation 0.012 on data, 0.020 on noise (reported;
asserted < 0.1 on noise, where a model that ignored c would follow the noise).
"""
import torch

import pathattr as pa
from pathattr.certainty import model as ct
from pathattr.data.certainty_task import PLACES, PRIOR, load_certainty_model, make_patches_data


def _data():
    x, y = make_patches_data(500, seed=7)
    noise = torch.rand(500, 1, 6, 6, generator=torch.Generator().manual_seed(8))
    return x, y, noise


def test_bundled_model_checks():
    model = load_certainty_model()
    x, y, noise = _data()
    with torch.no_grad():
        assert float((model.predict(x).argmax(1) == y).float().mean()) > 0.98
    on_data, on_noise = ct.information_absence(model, x), ct.information_absence(model, noise)
    assert on_data["ratio"] < 0.05 and on_noise["ratio"] < 0.05, (on_data, on_noise)
    prior = torch.tensor(PRIOR, dtype=torch.float64)
    n_data, n_noise = ct.neutrality(model, x, prior), ct.neutrality(model, noise, prior)
    assert n_noise["total_variation"] < 0.1, n_noise
    print(f"information absence ratio: data {on_data['ratio']:.4f}, noise {on_noise['ratio']:.4f}; "
          f"neutrality TV: data {n_data['total_variation']:.4f}, noise {n_noise['total_variation']:.4f}")


def test_icg_on_bundled_model():
    """ICG of the true class concentrates its positive mass on the three patch places
    (the class's patch, and the other places being dark), and
    sums to F(x, 1) - F(x, 0) up to the midpoint rule's error, which shrinks with more
    steps (a ReLU model: F is piecewise smooth in alpha). Measured: the class's patch (4 of
    36 pixels) holds 0.43 of the positive mass, the three places (12 pixels) 0.91; max |delta| of the softmax 0.010 at 100 steps, 0.0026 at 400."""
    model = load_certainty_model()
    x, y, _ = _data()
    x, y = x[:40], y[:40]
    attr, delta = pa.integrated_certainty_gradients(model, x, target=y, return_convergence_delta=True,
                                                    output="softmax")
    assert attr.shape == (40, 1, 6, 6)
    assert float(delta.abs().max()) < 2e-2
    _, delta400 = pa.integrated_certainty_gradients(model, x[:20], target=y[:20], n_steps=400,
                                                    return_convergence_delta=True, output="softmax")
    assert float(delta400.abs().mean()) < float(delta[:20].abs().mean())
    print(f"ICG max |delta| 100 steps {float(delta.abs().max()):.4f}, 400 steps {float(delta400.abs().max()):.4f}")
    patch = torch.zeros(40, 6, 6, dtype=torch.bool)
    places = torch.zeros(6, 6, dtype=torch.bool)
    for i, cls in enumerate(y.tolist()):
        r, c = PLACES[cls]
        patch[i, r:r + 2, c:c + 2] = True
    for r, c in PLACES:
        places[r:r + 2, c:c + 2] = True
    pos = attr[:, 0].clamp_min(0)
    total = pos.sum((1, 2)).clamp_min(1e-12)
    share = float(((pos * patch).sum((1, 2)) / total).mean())
    share_places = float(((pos * places).sum((1, 2)) / total).mean())
    print(f"ICG positive mass: class patch {share:.3f}, three places {share_places:.3f}")
    assert share > 3 * 4 / 36 and share_places > 12 / 36 + 0.3, (share, share_places)


def test_training_helper_is_deterministic_and_learns():
    x, y = make_patches_data(256, seed=3)
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: thread hand-offs cost more than they save on a shared CPU
    try:
        _train_twice(x, y, runs)
    finally:
        torch.set_num_threads(threads)
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0]
    model = ct.CertaintyModel(torch.nn.Flatten(), 1, 1)
    try:
        ct.train_certainty_model(model, x, y.float())
    except ValueError as err:
        assert "labels" in str(err)
    else:
        raise AssertionError("float labels were accepted")


def _train_twice(x, y, runs):
    for _ in range(2):
        torch.manual_seed(0)
        model = ct.CertaintyModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(72, 16), torch.nn.ReLU(),
                                                      torch.nn.Linear(16, 3)), 1, 1)
        runs.append(ct.train_certainty_model(model, x, y, epochs=4, batch_size=32, lr=1e-2, seed=5))


def test_suppression_check_on_bundled_model():
    """Figure 7's test: c = 0 on each image's own class patch suppresses the patch's IG.
    Measured (24 images, 32 steps): baseline 0, the patch's |IG| mass drops to 0.059 of
    its value with c = 1 (share of the map 0.78 -> 0.20); baseline 1 (close to the
    patch's own values, so little IG there to begin with): share 0.086 -> 0.015 of the
    map, below the patch's 4/36 = 0.111 of the pixels (mass ratio 0.18)."""
    model = load_certainty_model()
    x, y, _ = _data()
    x, y = x[:24], y[:24]
    region = torch.zeros(24, 1, 6, 6)
    for i, cls in enumerate(y.tolist()):
        r, c = PLACES[cls]
        region[i, 0, r:r + 2, c:c + 2] = 1
    res = ct.suppression_check(model, x, region, target=y, n_steps=32)
    assert abs(res["area_share"] - 4 / 36) < 1e-6
    assert res["suppression_0"] < 0.1 and res["masked_share_0"] < res["unmasked_share_0"] / 3, res
    assert res["masked_share_1"] < res["area_share"] / 3 and res["suppression_1"] < 0.3, res
