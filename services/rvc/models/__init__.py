"""RVC model code: plain PyTorch modules and their checkpoint loaders, no serving."""
