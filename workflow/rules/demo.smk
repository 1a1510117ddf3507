# The demo cohort (SPEC "Demo cohort"): synthetic FLAIR-like subjects with MS-like lesions drawn
# from nilearn's bundled MNI152 template; the default sample sheet lists them.


rule demo_subject:
    wildcard_constraints:
        subject=r"demo\d+",
    output:
        flair=f"{DEMO_DIR}/{{subject}}/flair.nii.gz",
        mask=f"{DEMO_DIR}/{{subject}}/mask.nii.gz",
    log:
        "logs/demo/{subject}.log",
    params:
        seed=get_demo_seed,
        voxel_size_range=config["demo"]["voxel_size_range"],
        n_lesions_range=config["demo"]["n_lesions_range"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/make_demo_subject.py"
