# SPEC stage 3: concentration-rate and Renyi-entropy maps per axial slice of the 8-bit FLAIR.


rule radiomics_maps:
    input:
        "results/normalized/{subject}/flair_u8.nii.gz",
    output:
        cr="results/features/{subject}/cr.nii.gz",
        re="results/features/{subject}/re.nii.gz",
    log:
        "logs/radiomics/{subject}.log",
    benchmark:
        "benchmarks/results/radiomics/{subject}.tsv"
    params:
        cr=config["radiomics"]["cr"],
        re=config["radiomics"]["re"],
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../envs/radiomics.yaml"
    script:
        "../scripts/radiomics_maps.py"
