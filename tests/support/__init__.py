"""Helpers shared by the test suite: a real Prometheus server and history backfill.

Tests that need Prometheus use the binaries of Debian's ``prometheus`` package
rather than a fake, so that queries, rules and TSDB behaviour are the real ones.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "manifests" / "prometheus"
