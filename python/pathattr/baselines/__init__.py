"""Baselines beyond a single tensor: reference sets and distribution baselines
(`sets`), and Local Path Integration's reference bank (`lpi_bank`)."""
from .lpi_bank import ReferenceBank, build_reference_bank, load_reference_bank
from .sets import DistributionBaseline, distribution_baseline

__all__ = ["ReferenceBank", "build_reference_bank", "load_reference_bank", "DistributionBaseline",
           "distribution_baseline"]
