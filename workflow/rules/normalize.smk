# SPEC stage 2: percentile clipping of the brain to [0, 1], the 8-bit image the radiomics use, and
# the brain mask every later stage takes as the brain: rule skull_strip's (skull_strip.smk) when
# the subject is stripped, else the imported FLAIR's nonzero voxels.


rule normalize_flair:
    input:
        unpack(get_brain_source),
        flair="results/nifti/{subject}/flair.nii.gz",
    output:
        flair="results/normalized/{subject}/flair.nii.gz",
        flair_u8="results/normalized/{subject}/flair_u8.nii.gz",
        brain="results/normalized/{subject}/brain.nii.gz",
    log:
        "logs/normalize/{subject}.log",
    params:
        lower_percentile=config["normalize"]["lower_percentile"],
        upper_percentile=config["normalize"]["upper_percentile"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/normalize_flair.py"
