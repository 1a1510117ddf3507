"""External validation: an external cohort segmented whole by a run's fold models and scored in 3D.

The paper validated its models on one dataset only. Here the fold models of each (model, input)
segment every subject of an external cohort (another site or scanner; config
``external.samples``) by the predict procedure, exactly what ``radfusion predict`` delivers
(:func:`radfusion.predict.predict_lesion_mask` on the imported canonical FLAIR: the run's
normalization and CR/RE maps, every axial brain slice, the fold models' sigmoid probabilities
averaged, thresholded and resized back, nothing outside the brain or in its surface rim). Each mask is scored against
the subject's imported lesion mask over the whole volume, on every slice, at the original
resolution and in 3D (:func:`radfusion.evaluate.score_volume`): unlike the cross-validation's
lesion-slice scores, false positives on lesion-free slices count.

The external subjects are never used for training, fold assignment or model choice; Table 5
(:func:`radfusion.stats.tables.external_summary_table`) summarizes the scores of this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Columns of results/external/{model}/{input}/subjects.tsv before the score columns
# (radfusion.evaluate.VOLUME_SCORE_COLUMNS).
SUBJECT_ID_COLUMNS = ("subject", "model", "input", "folds", "brain_slices")


def external_subject_columns() -> tuple[str, ...]:
    """The columns of an external subjects table: ``SUBJECT_ID_COLUMNS`` then the scores."""
    from radfusion.evaluate import VOLUME_SCORE_COLUMNS

    return (*SUBJECT_ID_COLUMNS, *VOLUME_SCORE_COLUMNS)


def segment_and_score(
    flair: np.ndarray,
    truth: np.ndarray,
    models: Sequence,
    settings: Mapping,
    *,
    subject: str,
    min_lesion_voxels: int = 3,
    min_overlap: float = 0.0,
    threads: int = 1,
    brain: np.ndarray | None = None,
    voxel_sizes: Sequence[float] | None = None,
) -> tuple[dict, np.ndarray]:
    """Segment one external subject with the fold models of a run and score the whole volume.

    Parameters
    ----------
    flair : ndarray, shape (X, Y, Z)
        The imported FLAIR in the canonical RAS+ orientation (``results/nifti/{subject}/flair.nii.gz``).
    truth : ndarray, shape (X, Y, Z)
        The imported lesion mask on the same grid (``results/nifti/{subject}/mask.nii.gz``).
    models : sequence of torch.nn.Module
        The fold models of one (model, input) (:func:`radfusion.ensemble.load_fold_models`).
    settings : mapping
        What the fold models record (:func:`radfusion.ensemble.load_fold_models`): ``model_name``,
        ``input_name``, ``channels``, ``image_size`` and ``preprocessing``.
    subject : str
        Named in the row and in errors.
    min_lesion_voxels, min_overlap : optional
        Lesion matching of :func:`radfusion.evaluate.score_volume` (config ``evaluation``).
    threads : int
        Threads of the radiomics.
    brain : ndarray of bool, optional
        The subject's brain mask (``results/normalized/{subject}/brain.nii.gz``); ``None``: the
        FLAIR's nonzero voxels.
    voxel_sizes : sequence of float, optional
        Voxel size (mm) of the canonical grid, for predict's surface margin
        (:func:`radfusion.predict.surface_rim`); ``None``: no margin (the cohort run gives it).

    Returns
    -------
    row : dict
        Keys :func:`external_subject_columns`: the subject, the run, the number of fold models,
        the number of brain slices segmented and :func:`radfusion.evaluate.score_volume`.
    mask : ndarray of uint8, shape (X, Y, Z)
        The predicted lesion mask on the canonical grid.

    Notes
    -----
    The segmentation is :func:`radfusion.predict.segment_with_fold_models` (the settings the
    model files record), the call :func:`radfusion.predict.predict_patient` makes, so the mask
    equals ``radfusion predict``'s on the same FLAIR (which writes it back on the input's own
    axes, a permutation and flips of these voxels). Scores are computed on the whole volume;
    voxels of the reference outside the brain mask count as missed.
    """
    from radfusion.evaluate import score_volume
    from radfusion.normalize import brain_mask
    from radfusion.predict import brain_slice_indices, segment_with_fold_models

    flair, truth = np.asarray(flair), np.asarray(truth)
    if flair.ndim != 3 or truth.shape != flair.shape:
        raise ValueError(
            f"subject '{subject}': expected a 3D FLAIR and a lesion mask of its shape, got {flair.shape} and {truth.shape}"
        )
    brain = brain_mask(flair) if brain is None else np.asarray(brain, dtype=bool)
    mask, _ = segment_with_fold_models(
        flair, models, settings, threads=threads, brain=brain, voxel_sizes=voxel_sizes
    )
    scores = score_volume(mask, truth, min_lesion_voxels=min_lesion_voxels, min_overlap=min_overlap)
    row = {
        "subject": subject,
        "model": settings["model_name"],
        "input": settings["input_name"],
        "folds": len(models),
        "brain_slices": int(brain_slice_indices(brain).size),
        **scores,
    }
    return row, mask


def segment_external_cohort(
    model_paths: Sequence[str | os.PathLike],
    subjects: Sequence[str],
    flair_paths: Sequence[str | os.PathLike],
    mask_paths: Sequence[str | os.PathLike],
    out_paths: Sequence[str | os.PathLike],
    *,
    brain_paths: Sequence[str | os.PathLike] | None = None,
    min_lesion_voxels: int = 3,
    min_lesion_mm3: float | None = None,
    min_overlap: float = 0.0,
    device=None,
    threads: int = 1,
) -> pd.DataFrame:
    """Segment and score every external subject with one run's fold models; write the masks.

    Parameters
    ----------
    model_paths : sequence of path-like
        The run's fold models (``results/models/{model}/{input}/fold{k}/model.pt``).
    subjects : sequence of str
        External subject IDs.
    flair_paths, mask_paths : sequence of path-like
        Each subject's imported FLAIR and lesion mask (canonical, checked: ``results/nifti/``).
    out_paths : sequence of path-like
        Where each subject's predicted mask is written (uint8 NIfTI with the imported FLAIR's
        affine, the canonical grid the reference mask lies on).
    brain_paths : sequence of path-like, optional
        Each subject's brain mask (``results/normalized/{subject}/brain.nii.gz``); ``None``:
        the FLAIRs' nonzero voxels.
    min_lesion_voxels, min_overlap : optional
        As :func:`segment_and_score`.
    min_lesion_mm3 : float, optional
        The minimum lesion size as a volume, converted per subject's grid
        (:func:`radfusion.evaluate.min_lesion_size_voxels`); overrides ``min_lesion_voxels``.
    device : optional
        ``None``: CUDA when present, else the CPU.
    threads : int
        Threads of the radiomics.

    Returns
    -------
    subjects : DataFrame
        One row per subject, columns :func:`external_subject_columns`.
    """
    from radfusion.evaluate import min_lesion_size_voxels
    from radfusion.io import load_volume, save_volume
    from radfusion.ensemble import load_fold_models
    from radfusion.predict import acquisition_warnings
    from radfusion.execution import resolve_device

    if brain_paths is None:
        brain_paths = [None] * len(subjects)
    lengths = {len(subjects), len(flair_paths), len(mask_paths), len(out_paths), len(brain_paths)}
    if len(lengths) != 1:
        raise ValueError(
            f"expected one FLAIR, mask, brain mask and output per subject, got {len(subjects)} subjects, "
            f"{len(flair_paths)} FLAIRs, {len(mask_paths)} masks, {len(brain_paths)} brain masks and "
            f"{len(out_paths)} outputs"
        )
    models, settings = load_fold_models(model_paths, device=resolve_device(device))
    rows = []
    for subject, flair_path, mask_path, out_path, brain_path in zip(
        subjects, flair_paths, mask_paths, out_paths, brain_paths
    ):
        flair, affine = load_volume(flair_path)
        truth, _ = load_volume(mask_path, dtype=np.uint8)
        brain = None if brain_path is None else load_volume(brain_path, dtype=np.uint8)[0].astype(bool)
        for message in acquisition_warnings(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))):
            log.warning("subject '%s' (%s): %s", subject, flair_path, message)
        row, mask = segment_and_score(
            flair,
            truth,
            models,
            settings,
            subject=subject,
            min_lesion_voxels=min_lesion_size_voxels(
                affine, min_lesion_voxels=min_lesion_voxels, min_lesion_mm3=min_lesion_mm3
            ),
            min_overlap=min_overlap,
            threads=threads,
            brain=brain,
            voxel_sizes=np.sqrt((affine[:3, :3] ** 2).sum(axis=0)),
        )
        save_volume(mask, affine, out_path)
        rows.append(row)
        log.info(
            "%s, %s/%s: Dice %.4f, LTPR %.4f, LFPR %.4f, AVD %.1f%% (%d true, %d predicted lesions)",
            subject, row["model"], row["input"], row["dice"], row["ltpr"], row["lfpr"], row["avd"],
            row["true_lesions"], row["predicted_lesions"],
        )
    return pd.DataFrame(rows, columns=list(external_subject_columns()))
