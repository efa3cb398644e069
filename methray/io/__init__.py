"""Readers of input files: methylation calls and BED intervals."""
