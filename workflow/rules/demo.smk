# The demo cohort (SPEC "Demo cohort"; docs/decisions.md "Demo cohort"): nilearn's bundled MNI152
# template, warped per subject, with a real patient's lesions from the vendored lesion library and
# a FLAIR contrast calibrated on real patients; the default sample sheet lists them.


rule demo_subject:
    wildcard_constraints:
        subject=r"demo\d+",
    output:
        flair=f"{DEMO_DIR}/{{subject}}/flair.nii.gz",
        mask=f"{DEMO_DIR}/{{subject}}/mask.nii.gz",
        tissues=f"{DEMO_DIR}/{{subject}}/tissues.nii.gz",
    log:
        "logs/demo/{subject}.log",
    params:
        seed=get_demo_seed,
        voxel_size_range=config["demo"]["voxel_size_range"],
        lesions=config["demo"]["lesions"],
        keep_fraction_range=config["demo"]["keep_fraction_range"],
        n_lesions_range=config["demo"]["n_lesions_range"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/make_demo_subject.py"
