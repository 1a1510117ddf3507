# Config and sample-sheet validation, and every input/param helper the rules use.
import os
import re

import pandas as pd
from snakemake.utils import validate

from radfusion.io import check_sample_sheet
from radfusion.predict import OUTPUT_FILES, read_patient_sheet
from radfusion.weights import missing_weights_message, weights_file_name

validate(config, schema="../schemas/config.schema.yaml")

SAMPLES = check_sample_sheet(
    pd.read_csv(config["samples"], sep="\t", dtype=str, comment="#").fillna(""),
    n_folds=config["folds"],
    sheet=config["samples"],
)
validate(SAMPLES, schema="../schemas/samples.schema.yaml", set_default=False)
SAMPLES = SAMPLES.set_index("subject", drop=False)

SUBJECTS = list(SAMPLES.index)
MODELS = list(config["models"])
INPUTS = list(config["inputs"])
FOLDS = list(range(1, config["folds"] + 1))
# Demo subjects are synthesized by rule demo_subject; their files live here.
DEMO_DIR = "resources/demo"
# The ImageNet encoder weights that fetch_encoder_weights makes, weights.folder/<URL's file name>.
ENCODER_WEIGHTS_FILE = os.path.join(
    config["weights"]["folder"], weights_file_name(config["weights"]["url"])
)


wildcard_constraints:
    subject="|".join(map(re.escape, SUBJECTS)) if SUBJECTS else "[^/]+",
    model="|".join(MODELS),
    input="|".join(INPUTS),
    fold=r"\d+",


def get_final_output():
    """Every target of a full run (rule all)."""
    return get_feature_output() + get_model_evaluation_output() + get_stats_output()


def get_feature_output():
    """Feature maps of every subject, their cohort table and Figures 2-3 (SPEC stages 3-4)."""
    return expand(
        "results/features/{subject}/{feature}.nii.gz",
        subject=SUBJECTS,
        feature=["cr", "re"],
    ) + [
        "results/tables/features.csv",
        *expand(
            "results/figures/figure{number}.{ext}", number=[2, 3], ext=["png", "svg"]
        ),
    ]


def get_flair_source(wildcards):
    """The subject's FLAIR as listed in the sample sheet (NIfTI file or DICOM folder)."""
    return SAMPLES.loc[wildcards.subject, "flair"]


def get_mask_source(wildcards):
    """The subject's lesion mask as listed in the sample sheet."""
    return SAMPLES.loc[wildcards.subject, "mask"]


def get_demo_seed(wildcards):
    """A demo subject's seed: the cohort seed and the subject's number (demo07 -> 7)."""
    number = re.fullmatch(r"demo(\d+)", wildcards.subject)
    if number is None:
        raise ValueError(
            f"demo subjects are named demo<number>, got '{wildcards.subject}'"
        )
    return config["demo"]["seed"] * 1000 + int(number.group(1))


def get_model_evaluation_output():
    """Training histories, evaluation tables, predictions and baselines of every (model, input, fold)."""
    runs = dict(model=MODELS, input=INPUTS, fold=FOLDS)
    return (
        expand("results/models/{model}/{input}/fold{fold}/history.tsv", **runs)
        + expand("results/eval/{model}/{input}/fold{fold}/subjects.tsv", **runs)
        + expand("results/eval/{model}/{input}/fold{fold}/slices.tsv", **runs)
        + expand(
            "results/predictions/{model}/{input}/{subject}.nii.gz",
            model=MODELS,
            input=INPUTS,
            subject=SUBJECTS,
        )
        + ["results/eval/baselines.tsv"]
    )


def get_training_protocol(wildcards):
    """The training protocol (config section training.<model>) of a train_model job, with
    encoder_weights: imagenet resolved to ENCODER_WEIGHTS_FILE (the input of get_encoder_weights).
    """
    protocol = dict(config["training"][wildcards.model])
    if protocol.get("encoder_weights") == "imagenet":
        protocol["encoder_weights"] = ENCODER_WEIGHTS_FILE
    return protocol


def get_encoder_weights(wildcards):
    """The encoder weights file a train_model job reads, or none.

    resnext_unet with encoder_weights: imagenet reads ENCODER_WEIGHTS_FILE (made by rule
    fetch_encoder_weights); a path is a local file of the user's; null and attention_unet read
    nothing. With weights.download: false and the ImageNet file absent, the DAG is not built:
    the one-line message names the file and where to put it. ancient(): a file fetched again
    (same verified bytes, new time stamp) does not retrain the models.
    """
    if wildcards.model != "resnext_unet":
        return []
    weights = config["training"]["resnext_unet"]["encoder_weights"]
    if weights is None:
        return []
    if weights != "imagenet":
        return ancient(weights)
    if not config["weights"]["download"] and not os.path.isfile(ENCODER_WEIGHTS_FILE):
        raise FileNotFoundError(
            missing_weights_message(
                ENCODER_WEIGHTS_FILE,
                config["weights"]["url"],
                "weights.download is false",
            )
        )
    return ancient(ENCODER_WEIGHTS_FILE)


# Tables 1-4 (SPEC stage 9): the model each table reports, and the two inputs compared.
TABLE_MODELS = {
    "table1": "resnext_unet",
    "table2": "resnext_unet",
    "table3": "attention_unet",
    "table4": "attention_unet",
}
COMPARED_INPUTS = ["mri", "mri_radiomics"]


def get_stats_output():
    """Tables 1-4, the SDD table and Figures 1 and 4 (SPEC stages 9-10) the config allows: the
    tables compare MRI with MRI+radiomics, so they need both inputs, and each table its model.
    """
    figures = expand(
        "results/figures/figure{number}.{ext}", number=[1, 4], ext=["png", "svg"]
    )
    if not set(COMPARED_INPUTS) <= set(INPUTS):
        return figures
    tables = [
        f"results/tables/{table}.csv"
        for table, model in TABLE_MODELS.items()
        if model in MODELS
    ]
    return tables + ["results/tables/sdd.csv"] + figures


def get_table_model(wildcards):
    """The model a table reports (Tables 1-2: resnext_unet, Tables 3-4: attention_unet)."""
    return TABLE_MODELS[wildcards.table]


def get_table_evaluations(wildcards):
    """A table's evaluation files, named by input: subjects.tsv of every fold, in fold order.

    Tables 1 and 3 with stats.paired_unit = slice also get the slices.tsv files, named
    "<input>_slices". Only the table's own model is listed, so a table target runs only
    that model's training and evaluation.
    """
    model = TABLE_MODELS[wildcards.table]
    files = {
        name: expand(
            "results/eval/{model}/{input}/fold{fold}/subjects.tsv",
            model=model,
            input=name,
            fold=FOLDS,
        )
        for name in COMPARED_INPUTS
    }
    if (
        wildcards.table in ("table1", "table3")
        and config["stats"]["paired_unit"] == "slice"
    ):
        for name in COMPARED_INPUTS:
            files[f"{name}_slices"] = expand(
                "results/eval/{model}/{input}/fold{fold}/slices.tsv",
                model=model,
                input=name,
                fold=FOLDS,
            )
    return files


def get_model_input_runs():
    """Every (model, input) pair, models outer, as dicts with keys model and input."""
    return [{"model": model, "input": name} for model in MODELS for name in INPUTS]


def get_history_runs():
    """Every training run (model, input, fold), in the order of get_history_files()."""
    return [
        {"model": model, "input": name, "fold": fold}
        for model in MODELS
        for name in INPUTS
        for fold in FOLDS
    ]


def get_history_files():
    """history.tsv of every training run (SDD table, Figure 4), in get_history_runs() order."""
    return [
        f"results/models/{run['model']}/{run['input']}/fold{run['fold']}/history.tsv"
        for run in get_history_runs()
    ]


def get_figure1_inputs(wildcards):
    """Figure 1's files: per-fold slices.tsv and predictions of every (model, input) (in
    get_model_input_runs() order, then fold or subject order), and every subject's mask and
    normalized FLAIR (SUBJECTS order)."""
    runs = get_model_input_runs()
    return {
        "slices": [
            f"results/eval/{run['model']}/{run['input']}/fold{fold}/slices.tsv"
            for run in runs
            for fold in FOLDS
        ],
        "predictions": [
            f"results/predictions/{run['model']}/{run['input']}/{subject}.nii.gz"
            for run in runs
            for subject in SUBJECTS
        ],
        "masks": expand("results/nifti/{subject}/mask.nii.gz", subject=SUBJECTS),
        "flairs": expand("results/normalized/{subject}/flair.nii.gz", subject=SUBJECTS),
    }


# Prediction for new patients (SPEC stage 12): the sheet config predict.samples, if any.
PREDICT_PATIENTS = (
    read_patient_sheet(config["predict"]["samples"])
    if config["predict"].get("samples")
    else None
)


def get_predict_flair(wildcards):
    """The patient's FLAIR (NIfTI file or DICOM folder) from the predict.samples sheet."""
    if PREDICT_PATIENTS is None:
        raise ValueError(
            "no patients to predict: set config predict.samples to a TSV with columns "
            "patient, flair (e.g. --config predict='{samples: patients.tsv}')"
        )
    if wildcards.patient not in PREDICT_PATIENTS.index:
        raise ValueError(
            f"patient '{wildcards.patient}' is not listed in {config['predict']['samples']}"
        )
    return PREDICT_PATIENTS.loc[wildcards.patient, "flair"]


def get_predict_runs():
    """The (model, input) pairs to predict with: the named ones, or every config pair for best."""
    wanted_model, wanted_input = config["predict"]["model"], config["predict"]["input"]
    return [
        [model, name]
        for model in MODELS
        for name in INPUTS
        if wanted_model in ("best", model) and wanted_input in ("best", name)
    ]


def get_predict_models():
    """Fold models of every (model, input) prediction may use."""
    return [
        f"results/models/{model}/{name}/fold{fold}/model.pt"
        for model, name in get_predict_runs()
        for fold in FOLDS
    ]


def get_predict_evaluations():
    """Evaluation tables that choose the best (model, input); none when both are named."""
    if "best" not in (config["predict"]["model"], config["predict"]["input"]):
        return []
    return [
        f"results/eval/{model}/{name}/fold{fold}/subjects.tsv"
        for model, name in get_predict_runs()
        for fold in FOLDS
    ]


def get_predict_output():
    """The prediction outputs of every patient of the predict.samples sheet."""
    patients = [] if PREDICT_PATIENTS is None else list(PREDICT_PATIENTS.index)
    return expand(
        "results/predict/{patient}/{name}",
        patient=patients,
        name=[OUTPUT_FILES[key] for key in ("mask", "summary", "lesions", "overlay")],
    )
