# SPEC stage 4: CR and RE inside vs outside lesions over the cohort (Figures 2 and 3).


rule feature_distributions:
    input:
        cr=expand("results/features/{subject}/cr.nii.gz", subject=SUBJECTS),
        re=expand("results/features/{subject}/re.nii.gz", subject=SUBJECTS),
        mask=get_cohort_masks,
        brain=expand("results/normalized/{subject}/brain.nii.gz", subject=SUBJECTS),
    output:
        table=report(
            "results/tables/features.csv",
            caption="../report/features_table.rst",
            category="Radiomic features",
        ),
        histograms="results/features/histograms.npz",
        figure2=report(
            "results/figures/figure2.png",
            caption="../report/figure2.rst",
            category="Radiomic features",
        ),
        figure2_svg="results/figures/figure2.svg",
        figure3=report(
            "results/figures/figure3.png",
            caption="../report/figure3.rst",
            category="Radiomic features",
        ),
        figure3_svg="results/figures/figure3.svg",
    log:
        "logs/features/distributions.log",
    benchmark:
        "benchmarks/results/features/distributions.tsv"
    params:
        cr_num=config["radiomics"]["cr"]["num"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/feature_distributions.py"
