# radfusion: the workflow is workflow/Snakefile (the Snakemake catalog's standard place, and what
# a `module` or snakedeploy points at). This file only lets `snakemake` run from the project root.


include: "workflow/Snakefile"


# An include never sets the including file's default target (Snakemake docs, "Includes"): this
# rule makes `snakemake` without targets run rule all, as workflow/Snakefile does.
rule default:
    input:
        rules.all.input,
    default_target: True
