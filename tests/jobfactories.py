"""module:factory targets for the dataset-job tests (imported by name, as a user's would be)."""
import torch
from torch import nn

SHAPE = (1, 6, 6)


class TinyCNN(nn.Module):
    def __init__(self, classes=3, in_channels=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Linear(4 * 36, classes)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).flatten(1))


def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN()


def tiny_certainty_cnn():
    """A certainty-aware TinyCNN: values (1 channel) and one certainty channel (for --method icg)."""
    from pathattr import CertaintyModel

    torch.manual_seed(0)
    return CertaintyModel(TinyCNN(in_channels=2), value_channels=1)


def wider_cnn():
    """Does not fit tiny_cnn's checkpoint (other shapes)."""
    return TinyCNN(classes=5)


def tiny_dataset():
    g = torch.Generator().manual_seed(1)
    x = torch.rand((20,) + SHAPE, generator=g)
    y = torch.randint(0, 3, (20,), generator=g)
    return torch.utils.data.TensorDataset(x, y)


def not_a_dataset():
    return 42


def open_store(out):
    """Every array of a run's Zarr store, read into numpy."""
    import zarr

    g = zarr.open_group(str(out / "store.zarr"), mode="r")
    return {name: a[...] for name, a in g.arrays()}
