"""methray: distributed batch scoring on Ray for sequence-based epigenome models.

Layers, bottom up (one concern per module):

- ``errors``    -- the one exception type the CLI turns into a one-line message.
- ``storage``   -- local / ``s3://`` paths and atomic (temp name + rename) writes.
- ``genome``    -- the reference FASTA (pyfaidx), contigs as base-code arrays.
- ``encoding``  -- window specs and vectorised one-hot encoding.
- ``io``        -- readers of methylation files (Bismark coverage, bedGraph) and BED.
- ``prepare``   -- methylation files -> CpG table in Parquet, partitioned by chrom.
- ``split``     -- chromosome / contiguous-block hold-out.
- ``windows``   -- Ray Data: CpG table -> encoded window batches.
- ``models``    -- the model zoo, registered by name.
- ``tasks``     -- task heads: losses and output transforms.
- ``train``     -- Ray Train ``TorchTrainer`` loop with checkpoints and early stopping.
- ``score``     -- Ray Data batch inference and bedGraph output.
- ``baseline``  -- CpG-density baseline (CpG count + GC fraction).
- ``metrics``   -- the metric table.
- ``pipeline``  -- the stages chained for one run; ``cli`` is the ``methray`` command.
"""

__version__ = "0.1.0"
