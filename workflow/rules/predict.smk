# SPEC stage 12, not part of rule all: lesion mask, count, volume and overlay for new patients
# listed in the sheet config["predict"]["samples"] (columns patient, flair), from the fold models of
# predict.model / predict.input ("best": the highest cross-validated Dice of this run, chosen by
# checkpoint choose_predict_run). Targets: results/predict/{patient}/lesion_mask.nii.gz (one
# patient) or rule predict_all (every patient).
#
# The cross-validation's models never saw a lesion-free slice (slices.brain_fraction: 0, the
# paper's), yet predict segments every brain slice. With predict.brain_fraction set (and unlike
# slices.brain_fraction), the chosen pair alone is trained again, same folds and protocol, on
# slices with that fraction of lesion-free brain slices added (results/predict_models/, rules
# export_predict_slices and train_predict_model, the slice and training rules with other paths),
# and predict uses those models. README, "Lesion-free slices", has the measurement.
rule predict_all:
    input:
        get_predict_output,


rule predict:
    wildcard_constraints:
        patient=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    input:
        flair=get_predict_flair,
        choice="results/predict/chosen_run.tsv",
        models=get_predict_models,
    output:
        mask="results/predict/{patient}/lesion_mask.nii.gz",
        summary="results/predict/{patient}/lesion_summary.csv",
        lesions="results/predict/{patient}/lesions.csv",
        overlay="results/predict/{patient}/overlay.png",
        brain="results/predict/{patient}/brain_mask.nii.gz",
    log:
        "logs/predict/{patient}.log",
    benchmark:
        "benchmarks/results/predict/{patient}.tsv"
    params:
        skull_strip=config["preprocess"]["skull_strip"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_patient.py"


checkpoint choose_predict_run:
    input:
        evaluations=get_predict_evaluations(),
    output:
        "results/predict/chosen_run.tsv",
    log:
        "logs/predict/chosen_run.log",
    params:
        model=config["predict"]["model"],
        input=config["predict"]["input"],
        runs=get_predict_runs(),
        models_dir=PREDICT_MODELS_DIR,
        brain_fraction=config["predict"]["brain_fraction"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/choose_predict_run.py"


use rule export_slices as export_predict_slices with:
    output:
        "results/predict_models/slices/{subject}.npz",
    log:
        "logs/predict_models/slices/{subject}.log",
    params:
        min_lesion_voxels=config["slices"]["min_lesion_voxels"],
        brain_fraction=config["predict"]["brain_fraction"],
        stride=config["slices"]["stride"],
        seed=config["seed"],


use rule train_model as train_predict_model with:
    input:
        slices=expand("results/predict_models/slices/{subject}.npz", subject=SUBJECTS),
        folds="results/folds.tsv",
        encoder_weights=get_encoder_weights,
    output:
        model="results/predict_models/{model}/{input}/fold{fold}/model.pt",
        history="results/predict_models/{model}/{input}/fold{fold}/history.tsv",
    log:
        "logs/predict_models/{model}/{input}/fold{fold}.log",
    benchmark:
        "benchmarks/results/predict_models/{model}/{input}/fold{fold}.tsv"
    params:
        checkpoint="results/predict_models/{model}/{input}/fold{fold}/checkpoint.pt",
        subjects=SUBJECTS,
        protocol=get_training_protocol,
        preprocessing=get_model_preprocessing(),
        validation=config["training"]["validation"],
        holdout_fraction=config["training"]["holdout_fraction"],
        mixed_precision=config["training"]["mixed_precision"],
        seed=config["seed"],
