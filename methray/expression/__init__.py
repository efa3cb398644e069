"""Gene expression from CpG methylation: one DeepMethyGene model per gene against baselines, on Ray.

DeepMethyGene (BMC Bioinformatics 2025, doi 10.1186/s12859-025-06115-2) predicts a gene's log2
RNA-seq expression in a sample from the M-values of the gene's CpGs in that sample. Modules, in
the order of the job: :mod:`.config`, :mod:`.data` (M-values, gene selection, folds),
:mod:`.models` (DeepMethyGene and the baselines), :mod:`.train` (units on Ray, ledger),
:mod:`.evaluate` (metrics, tables, figure), :mod:`.job` (``methray expression``),
:mod:`.predict` (``methray expression-predict``).
"""
