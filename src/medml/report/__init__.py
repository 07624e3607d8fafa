"""EvaluationReport -> one self-contained HTML report, Table 1, and the model card (TRIPOD+AI items).

Rendering only: the numbers come from ``medml.evaluate``; nothing here fits or evaluates a model.
"""

from medml.report.checklist import load_checklist
from medml.report.html import render_report, write_report
from medml.report.inputs import ReportInputs
from medml.report.model_card import model_card, model_card_markdown
from medml.report.tables import table_one

__all__ = [
    "ReportInputs",
    "load_checklist",
    "model_card",
    "model_card_markdown",
    "render_report",
    "table_one",
    "write_report",
]
