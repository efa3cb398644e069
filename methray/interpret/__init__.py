"""What a trained sequence model learned: ``methray interpret --config FILE``.

Stages, one module each:

- :mod:`.config`: the job's config (:class:`~.config.InterpretConfig`);
- :mod:`.select`: held-out CpGs by measured group (hypo / mid / hyper);
- :mod:`.attribute`: DeepLIFT-SHAP and ISM with tangermeme, the learned representation, and
  the :class:`~.attribute.Attributor` Ray Data actor;
- :mod:`.motifs`: TF-MoDISco (modisco-lite), first-layer filter PWMs, JASPAR (pyjaspar),
  Tomtom (memelite), MEME files;
- :mod:`.plots`: logos (logomaker), t-SNE (scikit-learn), attribution tracks;
- :mod:`.report`: the Markdown report; :mod:`.job`: the job.
"""
