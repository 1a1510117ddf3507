"""radfusion: radiomic feature maps fused with FLAIR for MS lesion segmentation.

The science of the workflow lives here as plain functions on arrays; the Snakemake
rules under ``workflow/`` only wire them together.
"""

__version__ = "0.1.0"
