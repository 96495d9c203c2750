"""The RVC service: voice.v1.VoiceConversion over a pool of worker processes."""
