"""The voice pipeline's gRPC services; each runs as ``python -m services.<name>``."""

from services.common.import_guard import hide_model_repository_folder

hide_model_repository_folder()
