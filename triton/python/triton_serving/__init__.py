"""Serving code of the Triton Python-backend models in triton/model_repo, both
engines' (Spark TTS and Piper): reading inputs and making tensors, typed errors,
the thread pool of decoupled models, calls between models (BLS), counters, and
Spark TTS's own serving (speaker cache, cancel flags, the vLLM client, the
``llm`` and ``spark_tts`` orchestrators).

The orchestrators (spark_synthesis, token_stream; piper_serving.synthesis for
Piper) import no Triton: each model.py is a shell that reads its request, hands
the orchestrator Triton's calls as callables, and sends what it gets back. The
model code itself lives in ``spark_tts`` (and the ``piper-tts`` package);
Piper's voice catalogue in ``piper_serving``.
"""
