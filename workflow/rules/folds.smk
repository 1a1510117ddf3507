# SPEC stage 6: subject-level cross-validation folds, as equal as possible, seeded.


rule assign_folds:
    input:
        get_sample_sheet_file,
    output:
        "results/folds.tsv",
    log:
        "logs/folds/assign_folds.log",
    params:
        subjects=get_fold_subjects,
        n_folds=config["folds"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/assign_folds.py"
