"""Shared by every test: the import guard in spark_tts must run before torch loads."""

import spark_tts  # noqa: F401  (see spark_tts._hide_model_repository_folder)
