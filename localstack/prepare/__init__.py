"""What the stack's processes run on, made ready before any of them starts."""
