"""Regulatory-element task (``methray regulatory``): peaks -> labelled windows -> multi-label models -> AUROC / AUPRC.

The second family of models in the zoo (DeepSEA, Basset, DanQ, conv4-FRSS) predicts
regulatory marks (TF binding, open chromatin) from sequence. The steps, each reading what the
previous one wrote under ``out_dir``:

``labels``
    :func:`methray.regulatory.labels.build_labels`: windows of ``labels.length`` bp every
    ``labels.stride`` bp, positive for a class when they contain one of its summits / site
    centres, N-rich windows dropped, negatives down-sampled (DeepGMAP kept 25 %); then
    :func:`methray.regulatory.split.split_windows`: contiguous test and validation blocks with a gap, and
    an "inside training" block. -> ``labels/stride<S>/`` (``windows.parquet``,
    ``classes.json``, ``split.parquet``).
``train``
    For each model of ``models``: a Ray Dataset of one-hot windows
    (:func:`methray.windows.encode_intervals`, ``x`` ``(L, 4) uint8``, ``y`` ``(K,) float32``)
    and :func:`methray.train.fit` with the ``multilabel`` task (BCE on logits), optionally
    with reverse-complement augmentation (``train.rc_augment``). -> ``models/<model>.s<S>/``.
``evaluate``
    Ray Data batch inference (:class:`methray.predictor.IntervalPredictor`; sigmoid outputs of the forward and
    reverse-complement window averaged, DanQ-style, when ``evaluate.rc_average``) on the
    held-out test block and on the inside-training block; per-class and mean AUROC / AUPRC
    (:func:`methray.metrics_multilabel.multilabel_metrics`). AUPRC is the primary metric: most
    windows are negative. -> ``metrics.tsv`` / ``metrics.parquet``.
``overfit``
    DeepGMAP Table 2: the same metrics inside the training data and on the held-out block,
    side by side, for each stride of ``overfit.strides`` (models ``overfit.models``).
    -> ``overfit.tsv`` / ``overfit.parquet``.
``genome``
    Every window at the label stride over real sequence (``genome.region`` or the whole of
    the chosen contigs) scored with ``genome.model``; one bedGraph per class. Windows overlap
    when ``stride < length``, and a bedGraph must not, so each window's value is written on
    its central ``stride`` bp (``[mid - stride // 2, mid - stride // 2 + stride)``): the
    tracks tile the sequence. -> ``tracks/<model>.<class>.bedGraph``.

Budgets: a CPU machine trains these 17-52 M parameter models at tens of windows per second,
so the ``budget`` section caps training / validation / evaluation windows and the scored
region; the caps are recorded in the metric tables. A GPU cluster runs the full scale with
``--set budget.max_train_windows=null`` (and the other caps ``null``), more epochs, and a
larger batch.

References
----------
Onimaru K, Nishimura O, Kuraku S (2020). PLoS Comput Biol 16: e1007616 (DeepGMAP: windows,
strides, inside-training vs held-out overfitting check, conv4-FRSS).
Quang D, Xie X (2016). DanQ. Nucleic Acids Res 44: e107 (reverse-complement averaging).
Zhou J, Troyanskaya OG (2015). DeepSEA. Nat Methods 12: 931-934.

Modules, one per stage: :mod:`~methray.regulatory.config` (the job config),
:mod:`~methray.regulatory.peaks` (peak and site files), :mod:`~methray.regulatory.labels`
(label table), :mod:`~methray.regulatory.split` (its contiguous split), :mod:`~methray.regulatory.data`
(windows as Ray Datasets, batch inference), :mod:`~methray.regulatory.train`,
:mod:`~methray.regulatory.evaluate` (metrics, overfitting table),
:mod:`~methray.regulatory.tracks` (genome-wide bedGraphs) and :mod:`~methray.regulatory.job`
(the steps chained).
"""
