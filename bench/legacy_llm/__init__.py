"""The transformers decoding loop the Spark LLM ran on before vLLM, and its Triton model:
kept only so that `python -m bench --llm-engine transformers` can compare the two."""
