"""Variant effects on predicted methylation: ``methray variants --vcf FILE --checkpoint DIR``.

Stages, one module each:

- :mod:`.config`: the job's config (:class:`~.config.VariantsConfig`);
- :mod:`.vcf`: reading the VCF with cyvcf2 by chunk, contig-name mapping, multi-allelic
  split, the REF check against the reference (statuses ``snv``, ``on_n``, ``ref_mismatch``,
  ``indel``, ``symbolic``);
- :mod:`.effects`: which CpGs each SNV can change (window / destroyed / created) and the
  :class:`~.effects.VariantPredictor` Ray Data actor (reference vs ALT windows);
- :mod:`.job`: the resumable Ray Data job, per-chunk outputs, assembly and summary.
"""
