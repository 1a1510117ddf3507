# External validation, planned only when config external.samples names a cohort (another site or
# scanner; columns subject, flair, mask). Its subjects go through import, normalize and radiomics
# (same rules, same folders as the training cohort; common.smk refuses shared IDs and files), never
# through the features table, slices, folds, training or model choice. Every (model, input)'s
# averaged fold models segment each whole volume as `radfusion predict` does; the masks are scored
# in 3D on every brain slice at the original resolution (radfusion.external).


rule external_segmentation:
    input:
        models=expand(
            "results/models/{{model}}/{{input}}/fold{fold}/model.pt", fold=FOLDS
        ),
        flairs=get_external_flairs,
        masks=get_external_masks,
        brains=expand(
            "results/normalized/{subject}/brain.nii.gz", subject=EXTERNAL_SUBJECTS
        ),
    output:
        subjects=report(
            "results/external/{model}/{input}/subjects.tsv",
            caption="../report/external_subjects.rst",
            category="External validation",
            subcategory="Per subject",
            labels={"model": "{model}", "input": "{input}"},
        ),
        masks=expand(
            "results/external/{{model}}/{{input}}/{subject}.nii.gz",
            subject=EXTERNAL_SUBJECTS,
        ),
    log:
        "logs/external/{model}/{input}.log",
    benchmark:
        "benchmarks/results/external/{model}/{input}.tsv"
    params:
        subjects=EXTERNAL_SUBJECTS,
        min_lesion_voxels=config["evaluation"]["min_lesion_voxels"],
        min_lesion_mm3=config["evaluation"]["min_lesion_mm3"],
        min_overlap=config["evaluation"]["min_overlap"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/external_segmentation.py"


rule table5_external:
    input:
        unpack(get_table5_inputs),
    output:
        csv=report(
            "results/tables/table5.csv",
            caption="../report/table5.rst",
            category="Tables",
            subcategory="table5",
            labels={"table": "table5", "format": "CSV"},
        ),
        html=report(
            "results/tables/table5.html",
            caption="../report/table5.rst",
            category="Tables",
            subcategory="table5",
            labels={"table": "table5", "format": "view"},
        ),
    log:
        "logs/tables/table5.log",
    params:
        runs=get_model_input_runs(),
        folds=FOLDS,
        inputs=COMPARED_INPUTS,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_table5.py"


rule figure5_external_slices:
    input:
        unpack(get_figure5_inputs),
    output:
        png=report(
            "results/figures/figure5.png",
            caption="../report/figure5.rst",
            category="Figures",
            labels={"figure": "Figure 5", "format": "PNG"},
        ),
        svg="results/figures/figure5.svg",
    log:
        "logs/figures/figure5.log",
    params:
        runs=get_model_input_runs(),
        subjects=EXTERNAL_SUBJECTS,
        n_examples=4,
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/make_figure5.py"
