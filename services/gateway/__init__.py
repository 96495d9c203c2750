"""The gateway: the public voice.v1.Gateway service, orchestrating TTS then RVC."""
