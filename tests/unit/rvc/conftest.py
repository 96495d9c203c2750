"""Generated untrained RVC models, written once for the unit tests that need real files."""

from pathlib import Path

import pytest

from services.rvc.tiny_models import write_tiny_models


@pytest.fixture(scope="session")
def tiny_rvc(tmp_path_factory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("rvc-untrained"))
