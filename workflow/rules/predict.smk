# SPEC stage 12, not part of rule all: lesion mask, count, volume and overlay for new patients
# listed in the sheet config["predict"]["samples"] (columns patient, flair), from the fold models of
# predict.model / predict.input ("best": the highest cross-validated Dice of this run). Targets:
# results/predict/{patient}/lesion_mask.nii.gz (one patient) or rule predict_all (every patient).
rule predict_all:
    input:
        get_predict_output,


rule predict:
    wildcard_constraints:
        patient=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    input:
        flair=get_predict_flair,
        models=get_predict_models(),
        evaluations=get_predict_evaluations(),
    output:
        mask="results/predict/{patient}/lesion_mask.nii.gz",
        summary="results/predict/{patient}/lesion_summary.csv",
        lesions="results/predict/{patient}/lesions.csv",
        overlay="results/predict/{patient}/overlay.png",
    log:
        "logs/predict/{patient}.log",
    benchmark:
        "benchmarks/results/predict/{patient}.tsv"
    params:
        model=config["predict"]["model"],
        input=config["predict"]["input"],
        runs=get_predict_runs(),
        folds=FOLDS,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_patient.py"
