# SPEC stage 10: Figure 1 (example slices with ground truth and predictions) and Figure 4
# (validation Dice per epoch). Figures 2 and 3 come from features.smk.


rule figure1_example_slices:
    input:
        unpack(get_figure1_inputs),
    output:
        png=report(
            "results/figures/figure1.png",
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "Figure 1", "format": "PNG"},
        ),
        svg="results/figures/figure1.svg",
    log:
        "logs/figures/figure1.log",
    params:
        runs=get_model_input_runs(),
        subjects=SUBJECTS,
        n_examples=3,
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_figure1.py"


rule figure4_validation_curves:
    input:
        get_history_files(),
    output:
        png=report(
            "results/figures/figure4.png",
            caption="../report/figure4.rst",
            category="Figures",
            labels={"figure": "Figure 4", "format": "PNG"},
        ),
        svg="results/figures/figure4.svg",
    log:
        "logs/figures/figure4.log",
    params:
        runs=get_history_runs(),
        models=MODELS,
        inputs=INPUTS,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_figure4.py"
