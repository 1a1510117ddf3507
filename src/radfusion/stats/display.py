"""Paper-style text and HTML of the tables of :mod:`radfusion.stats.tables`."""

from __future__ import annotations

import html

import pandas as pd

from radfusion.protocol import INPUT_LABELS, MODEL_LABELS

METRIC_LABELS = {
    "dice": "Dice score",
    "precision": "Precision",
    "sensitivity": "Sensitivity",
    "ltpr": "Lesion TPR (LTPR)",
    "lfpr": "Lesion FPR (LFPR)",
    "lesion_f1": "Lesion F1",
    "avd": "Volume difference (AVD, %)",
}


def mean_sd_text(mean: float, sd: float, *, digits: int = 3) -> str:
    """``"0.680 ± 0.041"``: a mean and SD as the paper prints them."""
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def p_value_text(p: float, *, digits: int = 3) -> str:
    """``"< 0.001"`` below 0.001, else the p-value to ``digits`` decimals."""
    return "< 0.001" if p < 0.001 else f"{p:.{digits}f}"


def summary_display_table(table: pd.DataFrame, *, baseline: str = "mri", fusion: str = "mri_radiomics") -> pd.DataFrame:
    """Paper-style text of Tables 1 and 3: Metrics | MRI | MRI+radiomics | p-value."""
    return pd.DataFrame(
        {
            "Metrics": [METRIC_LABELS.get(m, m) for m in table["metric"]],
            INPUT_LABELS.get(baseline, baseline): table[f"{baseline}_mean_sd"],
            INPUT_LABELS.get(fusion, fusion): table[f"{fusion}_mean_sd"],
            "p-value (Bonferroni)": [p_value_text(p) for p in table["p_bonferroni"]],
        }
    )


def fold_display_table(table: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """Paper-style text of Tables 2 and 4: Experiment | 1 | 2 | ... (fold means rounded)."""
    fold_columns = [c for c in table.columns if c.startswith("fold")]
    display = pd.DataFrame({"Experiment": table["experiment"]})
    for column in fold_columns:
        display[column.removeprefix("fold")] = [f"{v:.{digits}f}" for v in table[column]]
    return display


def sdd_display_table(table: pd.DataFrame, *, baseline: str = "mri", fusion: str = "mri_radiomics") -> pd.DataFrame:
    """Text of ``sdd.csv``: Model | MRI | MRI+radiomics | p-value."""
    return pd.DataFrame(
        {
            "Model": [MODEL_LABELS.get(m, m) for m in table["model"]],
            INPUT_LABELS.get(baseline, baseline): table[f"{baseline}_mean_sd"],
            INPUT_LABELS.get(fusion, fusion): table[f"{fusion}_mean_sd"],
            "p-value": [p_value_text(p) for p in table["p_value"]],
        }
    )


def external_display_table(table: pd.DataFrame, *, baseline: str = "mri", fusion: str = "mri_radiomics") -> pd.DataFrame:
    """Text of Table 5: Model | Metric | MRI | MRI+radiomics | p-value | the same two, cross-validated."""
    p_values = ["n/a" if pd.isna(p) else p_value_text(p) for p in table["p_bonferroni"]]
    return pd.DataFrame(
        {
            "Model": [MODEL_LABELS.get(m, m) for m in table["model"]],
            "Metric": [METRIC_LABELS.get(m, m) for m in table["metric"]],
            f"{INPUT_LABELS.get(baseline, baseline)}, external": table[f"{baseline}_mean_sd"],
            f"{INPUT_LABELS.get(fusion, fusion)}, external": table[f"{fusion}_mean_sd"],
            "p-value (Bonferroni)": p_values,
            f"{INPUT_LABELS.get(baseline, baseline)}, cross-validated": table[f"cv_{baseline}_mean_sd"],
            f"{INPUT_LABELS.get(fusion, fusion)}, cross-validated": table[f"cv_{fusion}_mean_sd"],
        }
    )


def table_html(display: pd.DataFrame, *, title: str, note: str = "") -> str:
    """A standalone HTML page holding one display table (for the Snakemake report)."""
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "th,td{border-bottom:1px solid #ccc;padding:4px 10px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}caption{font-weight:bold;margin-bottom:6px}"
        "p{color:#444;font-size:90%;max-width:48em}"
    )
    body = display.to_html(index=False, border=0, escape=True)
    opening_end = body.index(">", body.index("<table")) + 1  # caption goes right after <table ...>
    body = body[:opening_end] + f"<caption>{html.escape(title)}</caption>" + body[opening_end:]
    note_html = f"<p>{html.escape(note)}</p>" if note else ""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{body}{note_html}</body></html>\n"
    )
