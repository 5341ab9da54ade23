"""Reporting: what people read of a run or an audit (reports, figures, W&B media)."""
