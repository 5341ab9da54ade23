"""mia_bench: membership-inference benchmark for generative models."""

__version__ = "0.1.0"


def audit_release(**kwargs):  # noqa: ANN003, ANN201 - see mia_bench.external.audit.audit_release
    """Audit a release mia_bench did not train; returns an AuditResult (record and report paths)."""
    from mia_bench.external.audit import audit_release as _audit

    return _audit(**kwargs)
