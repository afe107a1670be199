"""dynpath: the reference implementation of "Dynamic Pathway for Query-aware Feature Learning in
Language-driven Action Localization" (Yang et al., IEEE TMM 2024) as a reproducible pipeline."""

__version__ = "0.1.0"
