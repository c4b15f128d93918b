"""Certainty-aware models and Integrated Certainty Gradients (docs/methods.md, ICG)."""
from .model import (CertaintyModel, damage, information_absence, integrated_certainty_gradients, neutrality,
                    sample_certainty, train_certainty_model)

__all__ = ["CertaintyModel", "damage", "information_absence", "integrated_certainty_gradients", "neutrality",
           "sample_certainty", "train_certainty_model"]
