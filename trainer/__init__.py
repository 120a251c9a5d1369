"""The single controller of MotionNFT training: config, NFT loss, advantages, schedules (docs/method.md 4-5).

The pure-math modules (`trainer.nft`, `trainer.advantages`, `trainer.schedules`) take tensors or
numbers and return them; `trainer.config` is the one config mechanism (YAML + ``--set`` overrides).
Import from the submodules; this package imports nothing heavy at import time.
"""
