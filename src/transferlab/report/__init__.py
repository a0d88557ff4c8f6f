"""Reports: stored runs turned into a self-contained HTML page plus Markdown and CSV tables."""

from .build import write_report
from .records import RunRecord, records_for_ids, records_for_plan

__all__ = ["RunRecord", "records_for_ids", "records_for_plan", "write_report"]
