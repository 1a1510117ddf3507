# SPEC stage 7: one job per (model, input, fold); CUDA when present (mixed precision), else CPU.
#
# The epoch checkpoint (fold{fold}/checkpoint.pt, passed as a param) is deliberately NOT an
# output: Snakemake deletes the declared outputs of a failed job, and the checkpoint must survive
# a killed or failed job so that rerunning it resumes after the last finished epoch. It is
# removed once model.pt and history.tsv are written.
#
# resnext_unet with encoder_weights: imagenet also reads the ImageNet weights file of rule
# fetch_encoder_weights (workflow/rules/weights.smk); see get_encoder_weights.


rule train_model:
    input:
        slices=expand("results/slices/{subject}.npz", subject=SUBJECTS),
        folds="results/folds.tsv",
        encoder_weights=get_encoder_weights,
    output:
        model="results/models/{model}/{input}/fold{fold}/model.pt",
        history="results/models/{model}/{input}/fold{fold}/history.tsv",
    log:
        "logs/training/{model}/{input}/fold{fold}.log",
    benchmark:
        "benchmarks/results/training/{model}/{input}/fold{fold}.tsv"
    params:
        checkpoint="results/models/{model}/{input}/fold{fold}/checkpoint.pt",
        subjects=SUBJECTS,
        protocol=get_training_protocol,
        preprocessing=get_model_preprocessing(),
        validation=config["training"]["validation"],
        holdout_fraction=config["training"]["holdout_fraction"],
        mixed_precision=config["training"]["mixed_precision"],
        seed=config["seed"],
    threads: config["training"]["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/train_model.py"
