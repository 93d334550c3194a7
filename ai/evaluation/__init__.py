"""Walk-forward out-of-sample evaluation of the forecasters and the ensemble (walkforward.py,
pure) and its report on disk (report.py: JSON and PNG plots under var/reports/)."""
from ai.evaluation.walkforward import BASELINES, ENSEMBLE, Costs, EvaluationConfig, evaluate, trade

__all__ = ["BASELINES", "ENSEMBLE", "Costs", "EvaluationConfig", "evaluate", "trade"]
