"""BiCodec, the audio codec of Spark TTS."""
