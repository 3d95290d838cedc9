"""What a run shows: the results report and the attribution pictures.

``report`` reads every student's metrics and writes reports/results.md (mean ± sd tables, paired
tests against the baseline and each row's ablation, the positive controls, the paper's figures) and
the DVC plot tables, its rows named by the objectives registry and the prior names; ``heatmaps``
draws, for a few test sentences, every prior and the guided student's own attribution as an HTML
page and PNG pictures, computing each the way its stage does. The top concern: it may use any layer
below and nothing below uses it.
"""
