"""Faithfulness metrics for attribution maps (docs/methods.md §11), one file per metric.

    insertion_deletion(model, x, attr)   RISE insertion / deletion AUCs
    pic(model, uint8_images, attr)       SIC and AIC (Performance Information Curves); alias aic_sic
    diffid(model, x, attr)               DiffID curves (insertion minus deletion, mean imputation)
    localisation(attr, masks)            energy inside a ground-truth mask and the pointing game

Every model-based metric batches all perturbed images of all inputs into chunked
no-grad forward passes on the model's device and scores the softmax probability of
the class predicted on the original (or a given target).
"""
from .diffid import FRACTIONS as DIFFID_FRACTIONS, DiffIDResult, diffid
from .insertion_deletion import InsertionDeletionResult, gaussian_blur, insertion_deletion
from .localisation import LocalisationResult, localisation
from .pic import SKIP_REASONS, THRESHOLDS as PIC_THRESHOLDS, PicCurve, PicResult, aic_sic, pic

__all__ = ["insertion_deletion", "InsertionDeletionResult", "gaussian_blur", "pic", "aic_sic", "PicResult", "PicCurve",
           "PIC_THRESHOLDS", "SKIP_REASONS", "diffid", "DiffIDResult", "DIFFID_FRACTIONS", "localisation",
           "LocalisationResult"]
