"""The synergy-lens test suite (mirrors the package: tests/phiid/... test synergy_lens/phiid/...)."""

from tests import shapecheck  # the runtime shape checker named in pyproject.toml

__all__ = ["shapecheck"]
