"""Rule assign_folds: subject-level cross-validation folds (SPEC stage 6)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from collections import Counter

from radfusion.folds import subject_folds, write_folds

folds = subject_folds(snakemake.params.subjects, n_folds=snakemake.params.n_folds, seed=snakemake.params.seed)
write_folds(folds, snakemake.output[0])
logging.info("fold sizes: %s", dict(sorted(Counter(folds.values()).items())))
