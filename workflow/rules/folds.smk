# SPEC stage 6: subject-level cross-validation folds, as equal as possible, seeded.


rule assign_folds:
    input:
        config["samples"],
    output:
        "results/folds.tsv",
    log:
        "logs/folds/assign_folds.log",
    params:
        subjects=SUBJECTS,
        n_folds=config["folds"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/assign_folds.py"
