"""Helpers shared by the Triton Python-backend models in triton/model_repo.

Serving code only; the models themselves live in ``spark_tts``.
"""
