# SPEC stage 5: the axial slices the networks see (FLAIR, CR, RE per-slice min-max, and the mask),
# one uncompressed .npz per subject at the volume's original in-plane size.


rule export_slices:
    input:
        flair="results/normalized/{subject}/flair.nii.gz",
        cr="results/features/{subject}/cr.nii.gz",
        re="results/features/{subject}/re.nii.gz",
        mask=get_lesion_mask,
        brain="results/normalized/{subject}/brain.nii.gz",
    output:
        "results/slices/{subject}.npz",
    log:
        "logs/slices/{subject}.log",
    params:
        min_lesion_voxels=config["slices"]["min_lesion_voxels"],
        brain_fraction=config["slices"]["brain_fraction"],
        stride=config["slices"]["stride"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/export_slices.py"
