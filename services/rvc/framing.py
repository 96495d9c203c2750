"""The time grid every RVC stage shares: 16 kHz input, 10 ms frames."""

RATE = 16_000
# One pitch frame, half a content (HuBERT) frame.
WINDOW = 160
