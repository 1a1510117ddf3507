# radfusion: radiomics (concentration rate, Renyi entropy) fused with FLAIR for MS lesion
# segmentation. This file is the table of contents; each stage lives in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/normalize.smk"
include: "workflow/rules/radiomics.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/slices.smk"
include: "workflow/rules/folds.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/predict.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
