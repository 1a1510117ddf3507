# SPEC stage 1: DICOM folder or NIfTI -> checked NIfTI in canonical orientation.


rule import_subject:
    wildcard_constraints:
        subject=subjects_regex(MASKED_SUBJECTS),
    input:
        flair=get_flair_source,
        mask=get_mask_source,
    output:
        flair="results/nifti/{subject}/flair.nii.gz",
        mask="results/nifti/{subject}/mask.nii.gz",
    log:
        "logs/import/{subject}.log",
    params:
        affine_tolerance=config["import"]["affine_tolerance"],
        mask_threshold=config["import"]["mask_threshold"],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/import_subject.py"


# Subjects without a lesion mask (empty mask cell; BIDS FLAIR without a derivatives mask): the FLAIR
# alone, so that the targets that need no mask (brain mask, normalized FLAIR, CR/RE maps) run.
use rule import_subject as import_flair with:
    wildcard_constraints:
        subject=subjects_regex(MASKLESS_SUBJECTS),
    input:
        flair=get_flair_source,
    output:
        flair="results/nifti/{subject}/flair.nii.gz",
