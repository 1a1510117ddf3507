"""Statistics of the study: Tables 1-4, training stability and paired tests (SPEC stage 9).

- :mod:`radfusion.stats.tests`: the Wilcoxon signed-rank test, Bonferroni, the SDD
  (Equations 4-5) and the population SD;
- :mod:`radfusion.stats.tables`: fold means, Tables 1-4 and the SDD table as numeric
  DataFrames;
- :mod:`radfusion.stats.display`: their paper-style text and HTML.
"""
