"""``fusioner-evaluate``: zero-shot scores on unseen classes from the cache (no encoder built)."""

from pipeline.evaluation.report import (
    metrics_document,
    per_class_rows,
    source_dataset,
    write_outputs,
)
from pipeline.evaluation.run import (
    MODES,
    PAPER_RULE,
    FoldInputs,
    FoldResult,
    Method,
    default_methods,
    evaluate_fold,
    open_fold,
    open_folds,
    random_text_table,
    run_folds,
)

__all__ = [
    "MODES",
    "PAPER_RULE",
    "FoldInputs",
    "FoldResult",
    "Method",
    "default_methods",
    "evaluate_fold",
    "metrics_document",
    "open_fold",
    "open_folds",
    "per_class_rows",
    "random_text_table",
    "run_folds",
    "source_dataset",
    "write_outputs",
]
