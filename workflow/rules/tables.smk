# SPEC stage 9: Tables 1-4 and the training-stability table (SDD). Each table reads only the
# evaluation outputs of its own model, so `snakemake results/tables/table2.csv` trains and
# evaluates ResNeXt-UNet only.


rule fold_dice_table:
    wildcard_constraints:
        table="table2|table4",
    input:
        unpack(get_table_evaluations),
    output:
        csv=report(
            "results/tables/{table}.csv",
            caption="../report/fold_dice_table.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "format": "CSV"},
        ),
        html=report(
            "results/tables/{table}.html",
            caption="../report/fold_dice_table.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "format": "view"},
        ),
    log:
        "logs/tables/{table}.log",
    params:
        model=get_table_model,
        inputs=COMPARED_INPUTS,
        folds=FOLDS,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_fold_dice_table.py"


rule metric_summary_table:
    wildcard_constraints:
        table="table1|table3",
    input:
        unpack(get_table_evaluations),
    output:
        csv=report(
            "results/tables/{table}.csv",
            caption="../report/metric_summary_table.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "format": "CSV"},
        ),
        html=report(
            "results/tables/{table}.html",
            caption="../report/metric_summary_table.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "format": "view"},
        ),
    log:
        "logs/tables/{table}.log",
    params:
        model=get_table_model,
        inputs=COMPARED_INPUTS,
        folds=FOLDS,
        paired_unit=config["stats"]["paired_unit"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_metric_summary_table.py"


rule sdd_table:
    input:
        get_history_files(),
    output:
        csv=report(
            "results/tables/sdd.csv",
            caption="../report/sdd_table.rst",
            category="Tables",
            subcategory="sdd",
            labels={"table": "sdd", "format": "CSV"},
        ),
        html=report(
            "results/tables/sdd.html",
            caption="../report/sdd_table.rst",
            category="Tables",
            subcategory="sdd",
            labels={"table": "sdd", "format": "view"},
        ),
        runs=report(
            "results/tables/sdd_runs.csv",
            caption="../report/sdd_runs.rst",
            category="Tables",
            subcategory="sdd",
            labels={"table": "sdd", "format": "CSV, per training run"},
        ),
    log:
        "logs/tables/sdd.log",
    params:
        runs=get_history_runs(),
        models=MODELS,
        inputs=COMPARED_INPUTS,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_sdd_table.py"
