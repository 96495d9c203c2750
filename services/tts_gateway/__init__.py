"""The TTS service: voice.v1.TextToSpeech in front of Spark TTS on Triton."""
