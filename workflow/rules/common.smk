# Config and sample-sheet validation, and every input/param helper the rules use.
#
# Reading the workflow needs Snakemake and pandas only: radfusion is imported by the jobs' scripts
# (from this workflow's own src/, docs/architecture.md), never here, so that the workflow also
# reads as a module where radfusion is not installed. Checks that need radfusion run in the first
# job that reads the file (the fold count in assign_folds, the images in import_subject).
import os
import re
import urllib.parse

import pandas as pd
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


def read_id_sheet(path, columns, schema):
    """A sample or patient sheet (TSV, one row per ID in columns[0]) indexed by ID: whitespace
    stripped, the columns present, each row valid under the JSON schema (ID format, a FLAIR) and
    every ID once; errors name the sheet. Call it while the workflow is read (validate() takes
    the schema path relative to the file being read).
    """
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    table = table.apply(lambda column: column.str.strip())
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected columns {list(columns)}"
        )
    validate(table, schema=schema, set_default=False)
    id_column = columns[0]
    duplicated = sorted(set(table.loc[table[id_column].duplicated(), id_column]))
    if duplicated:
        raise ValueError(f"{path}: duplicate {id_column} ID(s) {duplicated}")
    return table.set_index(id_column, drop=False)


# BIDS (docs/decisions.md, "BIDS in and out"): a FLAIR is sub-<s>/[ses-<t>/]anat/*_FLAIR.nii[.gz];
# its lesion mask lies in the derivatives folder of config bids.masks, at the same relative folder,
# named by the FLAIR's entities + [_space-<x>]_label-lesion[_desc-<y>]_mask.nii[.gz]. The same
# rules are radfusion.bids (radfusion predict --bids); a test checks that both read a tree alike.
BIDS_FLAIR = re.compile(
    r"(sub-[A-Za-z0-9]+)(?:_(ses-[A-Za-z0-9]+))?((?:_[a-z]+-[A-Za-z0-9]+)*)_FLAIR\.nii(?:\.gz)?"
)
BIDS_MASK_TAIL = (
    r"(?:_space-[A-Za-z0-9]+)?_label-lesion(?:_desc-[A-Za-z0-9]+)?_mask\.nii(?:\.gz)?"
)


def bids_flairs(root):
    """{subject ID: [FLAIR files]} of a BIDS dataset: ID sub-<s> or sub-<s>_ses-<t>, the files'
    sub-/ses- entities matching their folders."""
    found = {}
    for anat in sorted(
        glob_files(os.path.join(root, "sub-*", "anat"))
        + glob_files(os.path.join(root, "sub-*", "ses-*", "anat"))
    ):
        folders = os.path.relpath(anat, root).split(os.sep)[:-1]
        for name in sorted(os.listdir(anat)):
            match = BIDS_FLAIR.fullmatch(name)
            if match and [e for e in match.group(1, 2) if e] == folders:
                found.setdefault("_".join(folders), []).append(os.path.join(anat, name))
    return found


def glob_files(pattern):
    """Folders matching a glob pattern (a thin wrapper: glob imported once, here)."""
    import glob

    return [path for path in glob.glob(pattern) if os.path.isdir(path)]


def bids_lesion_mask(flair, root, masks):
    """The lesion mask of a BIDS FLAIR in derivatives folder masks, '' when there is none;
    two candidates stop the run naming both."""
    name = os.path.basename(flair)
    prefix = name[: name.rindex("_FLAIR")]
    folder = os.path.join(root, masks, os.path.relpath(os.path.dirname(flair), root))
    pattern = re.compile(re.escape(prefix) + BIDS_MASK_TAIL)
    candidates = (
        sorted(n for n in os.listdir(folder) if pattern.fullmatch(n))
        if os.path.isdir(folder)
        else []
    )
    if len(candidates) > 1:
        raise ValueError(
            f"{folder}: several lesion masks for {name}: {candidates}; keep one"
        )
    return os.path.join(folder, candidates[0]) if candidates else ""


def read_bids_dataset(root, masks):
    """The sample table (subject, flair, mask) of a BIDS dataset root: one FLAIR per subject and
    session, the mask from derivatives folder masks ('' if none). Errors name the subject and
    the files."""
    flairs = bids_flairs(root)
    if not flairs:
        raise ValueError(
            f"{root}: BIDS dataset without FLAIR: no sub-*/[ses-*/]anat/sub-*_FLAIR.nii[.gz]"
        )
    ambiguous = {subject: files for subject, files in flairs.items() if len(files) > 1}
    if ambiguous:
        listing = "; ".join(
            f"subject '{subject}': {', '.join(files)}"
            for subject, files in ambiguous.items()
        )
        raise ValueError(
            f"{root}: more than one FLAIR in one session ({listing}); keep one per "
            "session (e.g. move the other acq-/run- scans out of the dataset)"
        )
    rows = [
        {
            "subject": subject,
            "flair": files[0],
            "mask": bids_lesion_mask(files[0], root, masks),
        }
        for subject, files in sorted(flairs.items())
    ]
    return pd.DataFrame(rows).set_index("subject", drop=False)


def read_samples(path):
    """The cohort of config samples: a sample sheet, or a BIDS dataset root (a folder)."""
    if os.path.isdir(path):
        return read_bids_dataset(path, config["bids"]["masks"])
    return read_id_sheet(
        path, ["subject", "flair", "mask"], "../schemas/samples.schema.yaml"
    )


SAMPLES = read_samples(config["samples"])

SUBJECTS = list(SAMPLES.index)


def read_external_sheet():
    """The external test cohort of config external.samples (columns subject, flair, mask, as the
    sample sheet), or None when the key is unset. Its subjects share the per-subject folders of
    import, normalize and radiomics (results/nifti/{subject}/, ...) with the training cohort, so
    an ID in both sheets is refused; so is an image listed in both (it would be tested on data it
    was trained on).
    """
    path = config["external"].get("samples")
    if not path:
        return None
    sheet = read_samples(path)
    shared = sorted(set(sheet.index) & set(SUBJECTS))
    if shared:
        raise ValueError(
            f"{path}: external subject ID(s) {shared} are also in the sample sheet "
            f"{config['samples']}; the two cohorts share the per-subject folders "
            f"(results/nifti/{{subject}}/ ...), so rename the external subjects"
        )
    training_files = {
        os.path.realpath(file): subject
        for subject, row in SAMPLES.iterrows()
        for file in (row["flair"], row["mask"])
        if file
    }
    reused = [
        f"{subject} {column} = {row[column]} (training subject "
        f"{training_files[os.path.realpath(row[column])]})"
        for subject, row in sheet.iterrows()
        for column in ("flair", "mask")
        if row[column] and os.path.realpath(row[column]) in training_files
    ]
    if reused:
        raise ValueError(
            f"{path}: external file(s) also listed in the sample sheet {config['samples']}: "
            f"{'; '.join(reused)}; an external subject must never be used for training"
        )
    return sheet


# External validation (external.smk): its subjects go through import, normalize and radiomics
# like SUBJECTS, never through slices, folds, training or the cohort's features table.
EXTERNAL = read_external_sheet()
EXTERNAL_SUBJECTS = [] if EXTERNAL is None else list(EXTERNAL.index)
# Subjects without a lesion mask (an empty mask cell, a BIDS FLAIR without a derivatives mask) are
# imported by rule import_flair (FLAIR only) and refused by every target that needs a mask.
MASKLESS_SUBJECTS = [
    subject
    for sheet in (SAMPLES, EXTERNAL)
    if sheet is not None
    for subject, row in sheet.iterrows()
    if not row["mask"]
]
MASKED_SUBJECTS = [
    s for s in SUBJECTS + EXTERNAL_SUBJECTS if s not in MASKLESS_SUBJECTS
]
MODELS = list(config["models"])
INPUTS = list(config["inputs"])
FOLDS = list(range(1, config["folds"] + 1))
# Demo subjects are synthesized by rule demo_subject; their files live here.
DEMO_DIR = "resources/demo"
# The ImageNet encoder weights that fetch_encoder_weights makes, weights.folder/<URL's file name>
# (radfusion.weights.weights_file_name; the schema's pattern ends the name in -<SHA-256 prefix>.<ext>).
ENCODER_WEIGHTS_FILE = os.path.join(
    config["weights"]["folder"],
    os.path.basename(
        urllib.parse.unquote(urllib.parse.urlparse(config["weights"]["url"]).path)
    ),
)


wildcard_constraints:
    subject=(
        "|".join(map(re.escape, SUBJECTS + EXTERNAL_SUBJECTS))
        if SUBJECTS + EXTERNAL_SUBJECTS
        else "[^/]+"
    ),
    model="|".join(MODELS),
    input="|".join(INPUTS),
    fold=r"\d+",


def get_final_output():
    """Every target of a full run (rule all)."""
    return (
        get_feature_output()
        + get_model_evaluation_output()
        + get_stats_output()
        + get_external_output()
    )


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


def get_sample_sheet(subject):
    """The sheet listing a subject: the sample sheet, or the external cohort's (external.samples)."""
    if subject in SAMPLES.index or EXTERNAL is None:
        return SAMPLES
    return EXTERNAL


def get_flair_source(wildcards):
    """The subject's FLAIR as listed in its sheet (NIfTI file or DICOM folder)."""
    return get_sample_sheet(wildcards.subject).loc[wildcards.subject, "flair"]


def get_mask_source(wildcards):
    """The subject's lesion mask as listed in its sheet (import_subject: subjects with one)."""
    return get_sample_sheet(wildcards.subject).loc[wildcards.subject, "mask"]


def strips_skull(subject):
    """Whether the subject's brain mask comes from the skull_strip job, by preprocess.skull_strip
    (always; never with none; with auto, for every subject but the demo subjects the workflow synthesizes
    itself, skull-stripped by construction, so their DAG is the one before stripping existed).
    Under auto the skull_strip job applies the measured "already stripped" rule itself
    (radfusion.skullstrip.looks_skull_stripped) and keeps the nonzero voxels when it holds.
    """
    mode = config["preprocess"]["skull_strip"]
    if mode == "none":
        return False
    if mode == "always":
        return True
    flair = get_sample_sheet(subject).loc[subject, "flair"]
    return os.path.dirname(os.path.normpath(flair)) != os.path.join(DEMO_DIR, subject)


def get_brain_source(wildcards):
    """The brain mask that the skull_strip job made for the subject, or none (normalize_flair takes
    the imported FLAIR's nonzero voxels, a skull-stripped FLAIR's brain)."""
    if strips_skull(wildcards.subject):
        return {"brain": f"results/stripped/{wildcards.subject}/brain.nii.gz"}
    return {}


def missing_mask_reason(subject):
    """Why a subject has no lesion mask, or '' when it has one."""
    sheet = get_sample_sheet(subject)
    if sheet.loc[subject, "mask"]:
        return ""
    flair = sheet.loc[subject, "flair"]
    source = config["samples"] if sheet is SAMPLES else config["external"]["samples"]
    if os.path.isdir(source):
        expected = os.path.join(
            source,
            config["bids"]["masks"],
            os.path.relpath(os.path.dirname(flair), source),
            os.path.basename(flair)[: os.path.basename(flair).rindex("_FLAIR")]
            + "_label-lesion_mask.nii.gz",
        )
        return f"FLAIR {flair}, no {expected}"
    return f"FLAIR {flair}, the mask cell of its row in {source} is empty"


def lesion_masks(subjects):
    """The imported lesion masks of subjects (results/nifti/{subject}/mask.nii.gz), for a target
    that needs them; subjects without a mask stop it, each named with its FLAIR and why.
    """
    reasons = {subject: missing_mask_reason(subject) for subject in subjects}
    missing = [
        f"subject '{s}' has no lesion mask: {why}" for s, why in reasons.items() if why
    ]
    if missing:
        raise ValueError(
            "; ".join(missing)
            + ". This target needs the lesion masks: give them, or ask for targets that need "
            "none (brain mask, normalized FLAIR, CR/RE maps: results/features/{subject}/cr.nii.gz)"
        )
    return expand("results/nifti/{subject}/mask.nii.gz", subject=subjects)


def get_lesion_mask(wildcards):
    """The subject's imported lesion mask (export_slices); see lesion_masks()."""
    return lesion_masks([wildcards.subject])[0]


def get_fold_subjects(wildcards):
    """The subjects the folds split: all of the sample sheet, each with a lesion mask (training
    needs them all)."""
    lesion_masks(SUBJECTS)
    return SUBJECTS


def get_sample_sheet_file(wildcards):
    """The sample sheet file (assign_folds reads it for its full check), none for a BIDS root."""
    return [] if os.path.isdir(config["samples"]) else [config["samples"]]


def subjects_regex(subjects):
    """A wildcard regex matching exactly these subject IDs (none: matches nothing)."""
    return "|".join(map(re.escape, subjects)) if subjects else "(?!)"


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


def get_model_preprocessing():
    """How the slices are made, stored in every model file so that radfusion predict repeats it:
    the normalization percentiles, the CR and RE parameters and the evaluation threshold.
    """
    return {
        "lower_percentile": config["normalize"]["lower_percentile"],
        "upper_percentile": config["normalize"]["upper_percentile"],
        "cr": dict(config["radiomics"]["cr"]),
        "re": dict(config["radiomics"]["re"]),
        "threshold": config["evaluation"]["threshold"],
    }


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
        # The wording of radfusion.weights.missing_weights_message.
        folder, name = os.path.split(ENCODER_WEIGHTS_FILE)
        raise FileNotFoundError(
            f"ImageNet encoder weights {name} are missing from {folder}/ and were not "
            f"downloaded (weights.download is false). On a machine with network access "
            f"download {config['weights']['url']} and put the file at "
            f"{ENCODER_WEIGHTS_FILE}; or set training.resnext_unet.encoder_weights: null to "
            f"train the encoder from scratch."
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
    get_model_input_runs() order, then fold or subject order), and every subject's mask,
    normalized FLAIR and brain mask (SUBJECTS order)."""
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
        "masks": lesion_masks(SUBJECTS),
        "flairs": expand("results/normalized/{subject}/flair.nii.gz", subject=SUBJECTS),
        "brains": expand("results/normalized/{subject}/brain.nii.gz", subject=SUBJECTS),
    }


# Prediction for new patients (SPEC stage 12): the sheet config predict.samples, if any.
PREDICT_PATIENTS = (
    read_id_sheet(
        config["predict"]["samples"],
        ["patient", "flair"],
        "../schemas/patients.schema.yaml",
    )
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


def trains_predict_models():
    """Whether new patients get their own models: predict.brain_fraction set and different from
    slices.brain_fraction (otherwise they would repeat the cross-validation's models exactly).
    """
    fraction = config["predict"].get("brain_fraction")
    return fraction is not None and fraction != config["slices"]["brain_fraction"]


# Where the fold models that predict new patients live: the cross-validation's, or those trained
# again with predict.brain_fraction lesion-free slices (rule train_predict_model, predict.smk).
PREDICT_MODELS_DIR = (
    "results/predict_models" if trains_predict_models() else "results/models"
)


def read_predict_choice(path):
    """(model, input) of the table written by checkpoint choose_predict_run."""
    choice = pd.read_csv(path, sep="\t")
    return str(choice.loc[0, "model"]), str(choice.loc[0, "input"])


def get_predict_models(wildcards):
    """The fold models of the (model, input) that predict uses: the named pair, or (for best) the
    one checkpoint choose_predict_run chose, so that only that pair's prediction models are
    trained when predict.brain_fraction asks for them.
    """
    runs = get_predict_runs()
    if len(runs) == 1:
        model, name = runs[0]
    else:
        choice = checkpoints.choose_predict_run.get().output[0]
        model, name = read_predict_choice(choice)
    return expand(
        f"{PREDICT_MODELS_DIR}/{model}/{name}/fold{{fold}}/model.pt", fold=FOLDS
    )


def get_predict_evaluations():
    """Evaluation tables that choose the best (model, input); none when both are named."""
    if "best" not in (config["predict"]["model"], config["predict"]["input"]):
        return []
    return [
        f"results/eval/{model}/{name}/fold{fold}/subjects.tsv"
        for model, name in get_predict_runs()
        for fold in FOLDS
    ]


def get_predict_output(wildcards):
    """Every output of rule predict (predict.smk) for every patient of the predict.samples sheet."""
    patients = [] if PREDICT_PATIENTS is None else list(PREDICT_PATIENTS.index)
    return expand(rules.predict.output, patient=patients)


# External validation (the paper's models were validated on one dataset only; external.smk): the
# cohort of config external.samples, segmented by every (model, input)'s averaged fold models.
def get_external_output():
    """The external stage's targets, none when external.samples is unset: the external subjects'
    feature maps, per-run masks and subject tables, Figure 5 and (with both inputs) Table 5.
    """
    if not EXTERNAL_SUBJECTS:
        return []
    outputs = (
        expand(
            "results/features/{subject}/{feature}.nii.gz",
            subject=EXTERNAL_SUBJECTS,
            feature=["cr", "re"],
        )
        + [
            f"results/external/{run['model']}/{run['input']}/subjects.tsv"
            for run in get_model_input_runs()
        ]
        + expand("results/figures/figure5.{ext}", ext=["png", "svg"])
    )
    if set(COMPARED_INPUTS) <= set(INPUTS):
        outputs.append("results/tables/table5.csv")
    return outputs


def check_external_cohort():
    """Stop a target of the external stage (Table 5, Figure 5, results/external/) when
    config external.samples is unset, naming the key."""
    if not EXTERNAL_SUBJECTS:
        raise ValueError(
            "no external cohort: set config external.samples to a TSV with columns subject, "
            "flair, mask (e.g. --config external='{samples: external.tsv}')"
        )


def get_external_flairs(wildcards):
    """The imported (canonical) FLAIR of every external subject, EXTERNAL_SUBJECTS order."""
    check_external_cohort()
    return expand("results/nifti/{subject}/flair.nii.gz", subject=EXTERNAL_SUBJECTS)


def get_cohort_masks(wildcards):
    """The lesion masks of every subject of the sample sheet (feature_distributions)."""
    return lesion_masks(SUBJECTS)


def get_external_masks(wildcards):
    """The lesion masks of every external subject (external_segmentation scores against them)."""
    check_external_cohort()
    return lesion_masks(EXTERNAL_SUBJECTS)


def get_external_subjects_tables():
    """results/external/{model}/{input}/subjects.tsv of every run, in get_model_input_runs() order."""
    check_external_cohort()
    return [
        f"results/external/{run['model']}/{run['input']}/subjects.tsv"
        for run in get_model_input_runs()
    ]


def get_table5_inputs(wildcards):
    """Table 5's files: the external subject tables of every run (get_model_input_runs() order)
    and, named cv, the cross-validation subjects.tsv of every run and fold (then fold order).
    """
    return {
        "external": get_external_subjects_tables(),
        "cv": [
            f"results/eval/{run['model']}/{run['input']}/fold{fold}/subjects.tsv"
            for run in get_model_input_runs()
            for fold in FOLDS
        ],
    }


def get_figure5_inputs(wildcards):
    """Figure 5's files: the external masks of every run (get_model_input_runs() order, then
    EXTERNAL_SUBJECTS order) and each external subject's mask, normalized FLAIR and brain mask.
    """
    check_external_cohort()
    return {
        "predictions": [
            f"results/external/{run['model']}/{run['input']}/{subject}.nii.gz"
            for run in get_model_input_runs()
            for subject in EXTERNAL_SUBJECTS
        ],
        "masks": lesion_masks(EXTERNAL_SUBJECTS),
        "flairs": expand(
            "results/normalized/{subject}/flair.nii.gz", subject=EXTERNAL_SUBJECTS
        ),
        "brains": expand(
            "results/normalized/{subject}/brain.nii.gz", subject=EXTERNAL_SUBJECTS
        ),
    }
