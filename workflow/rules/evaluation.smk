# SPEC stage 8: each fold's final model predicts its test subjects' exported slices; scores at
# the original resolution. One job per (model, input): inference is cheap next to training.


rule evaluate_models:
    input:
        models=expand(
            "results/models/{{model}}/{{input}}/fold{fold}/model.pt", fold=FOLDS
        ),
        slices=expand("results/slices/{subject}.npz", subject=SUBJECTS),
        flair=expand("results/normalized/{subject}/flair.nii.gz", subject=SUBJECTS),
        folds="results/folds.tsv",
    output:
        subjects=expand(
            "results/eval/{{model}}/{{input}}/fold{fold}/subjects.tsv", fold=FOLDS
        ),
        slices=expand(
            "results/eval/{{model}}/{{input}}/fold{fold}/slices.tsv", fold=FOLDS
        ),
        predictions=expand(
            "results/predictions/{{model}}/{{input}}/{subject}.nii.gz",
            subject=SUBJECTS,
        ),
    log:
        "logs/evaluation/{model}/{input}.log",
    benchmark:
        "benchmarks/results/evaluation/{model}/{input}.tsv"
    params:
        subjects=SUBJECTS,
        folds=FOLDS,
        threshold=config["evaluation"]["threshold"],
        min_lesion_voxels=config["evaluation"]["min_lesion_voxels"],
        min_lesion_mm3=config["evaluation"]["min_lesion_mm3"],
        min_overlap=config["evaluation"]["min_overlap"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/evaluate_models.py"


# Non-learned references scored by the same code: predict nothing, and the best global FLAIR
# threshold of the training folds applied to the test fold.
rule evaluate_baselines:
    input:
        slices=expand("results/slices/{subject}.npz", subject=SUBJECTS),
        folds="results/folds.tsv",
        flair=expand("results/normalized/{subject}/flair.nii.gz", subject=SUBJECTS),
    output:
        "results/eval/baselines.tsv",
    log:
        "logs/evaluation/baselines.log",
    benchmark:
        "benchmarks/results/evaluation/baselines.tsv"
    params:
        subjects=SUBJECTS,
        min_lesion_voxels=config["evaluation"]["min_lesion_voxels"],
        min_lesion_mm3=config["evaluation"]["min_lesion_mm3"],
        min_overlap=config["evaluation"]["min_overlap"],
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/evaluate_baselines.py"
