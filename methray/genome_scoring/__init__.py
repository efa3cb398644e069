"""Genome-wide scoring of a tissue set (``methray score-genome``): every CpG, every (tissue, model) pair, resumable.

The job (``methray score-genome --config tissue_set.yaml [--date D]``):

1. **CpGs**: the CpG table of the reference (:mod:`methray.cpgs`), enumerated into
   ``<prefix>/cpgs`` unless ``cpg_table`` names one. Sites whose window is mostly N
   (``excluded``) are skipped and counted.
2. **Shards**: the contigs (or ``chroms`` / ``regions``) are cut into ``shard_bp`` chunks
   (:func:`methray.shards.plan_shards`); the :class:`~methray.shards.ShardLedger` in
   ``<prefix>/_shards/`` records finished ones, so a rerun scores only the missing shards.
3. **Score**: one Ray Data pipeline over the missing shards: a task reads each shard's CpGs
   from the table, an actor pool of :class:`~methray.genome_scoring.actors.SetPredictor` (every checkpoint loaded once per
   actor; windows encoded inside the actor, no one-hot table is materialised) predicts them.
   Each actor call gets one shard's block and runs the models on fixed sub-batches counted
   from the shard's first CpG, so a prediction does not depend on how a run was interrupted.
4. **Per shard**, once all its CpGs are back: one Parquet file per tissue,
   ``predictions/<t>.<model>/<shard id>.parquet`` (the prediction schema of
   :mod:`methray.predictions`, as every job writes), then its ledger marker.
5. **Assemble** (all shards done): per tissue ``<t>.<model>.bedGraph`` (track line; rows
   ``chrom, pos, pos+1, beta`` with 4 decimals; ``score.track_order``, by default
   ``LC_ALL=C sort -k1,1 -k2,2n`` order) and ``<t>.<model>.bw`` (the same values, with zoom
   levels), streamed shard by shard.
6. **Evaluate and plot** (:mod:`methray.genome_scoring.evaluate`, :mod:`methray.plots`), then
   ``_summary.json`` is written last: a prefix with it is complete and a rerun only reports it.

Every file is written under a temporary name and renamed when complete
(:func:`methray.storage.atomic_path`). ``<prefix>`` is ``<out_dir>/<run_name>[/<date>]``.

Modules: :mod:`~methray.genome_scoring.config` (the tissue set), :mod:`~.plan` (CpG catalogue,
shards and their counts), :mod:`~.actors` (the Ray Data pieces), :mod:`~.outputs` (shard files
and tracks), :mod:`~.evaluate` (metric tables), :mod:`~.job` (the steps chained, resumption).
"""
