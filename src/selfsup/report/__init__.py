"""A run's readable report: metrics.jsonl and results.json -> report.md with PNG figures."""
from .write import write_report

__all__ = ["write_report"]
