# Skull stripping (issue 23), before normalization: the brain mask of a FLAIR as a hospital exports
# it (whole head). preprocess.skull_strip: auto strips a FLAIR that is not already skull-stripped
# (measured rule: nonzero voxels over 1,900 mL; radfusion.skullstrip), always strips, none keeps
# the nonzero voxels. Which subjects get this job: strips_skull() in common.smk. The mask becomes
# results/normalized/{subject}/brain.nii.gz (rule normalize_flair), the brain of every later stage.
# deepbet runs on the CPU (about 2 s of network per scan): no gpu resource.


rule skull_strip:
    input:
        "results/nifti/{subject}/flair.nii.gz",
    output:
        flair="results/stripped/{subject}/flair.nii.gz",
        brain="results/stripped/{subject}/brain.nii.gz",
    log:
        "logs/skull_strip/{subject}.log",
    benchmark:
        "benchmarks/results/skull_strip/{subject}.tsv"
    params:
        mode=config["preprocess"]["skull_strip"],
    threads: 2
    resources:
        mem_mb=3000,
        runtime=15,
    conda:
        "../envs/skull_strip.yaml"
    script:
        "../scripts/skull_strip.py"
