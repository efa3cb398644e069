"""The hold-out never lets a training window overlap a held-out window."""

import numpy as np
import pandas as pd
import pytest

from methray.config import SplitConfig
from methray.errors import MethrayError
from methray.io.methylation import read_methylation
from methray.split import assign, plan_regions
from methray.train import WindowSpec

from conftest import IMR90

SIZES = {"chr22": 51_304_566}


def nearest_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each position in ``a``, the distance to the nearest position in ``b``."""
    b = np.sort(b)
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1)
    return np.minimum(np.abs(a - b[i - 1]), np.abs(a - b[i]))


@pytest.fixture(scope="module")
def imr90_sites():
    return read_methylation(str(IMR90))[["chrom", "pos"]]


@pytest.mark.parametrize("spec", [WindowSpec(400, exclude_cpg=True), WindowSpec(1001)])
def test_no_train_window_overlaps_a_test_window_on_real_data(imr90_sites, spec):
    cfg = SplitConfig()
    regions = plan_regions(imr90_sites, ["chr22"], SIZES, cfg)
    labels = assign(regions, imr90_sites["chrom"].to_numpy(), imr90_sites["pos"].to_numpy(), cfg.gap_bp)
    pos = imr90_sites["pos"].to_numpy()
    counts = pd.Series(labels).value_counts()
    assert counts["test"] / len(pos) == pytest.approx(0.2, abs=0.02)
    assert counts["val"] / len(pos) == pytest.approx(0.1, abs=0.02)
    # Two windows of the same spec overlap iff their CpGs are closer than the window's span.
    span = spec.offsets().max() - spec.offsets().min() + 1
    train = pos[labels == "train"]
    for held in ("test", "val"):
        assert nearest_distance(train, pos[labels == held]).min() >= span
    assert nearest_distance(pos[labels == "val"], pos[labels == "test"]).min() >= span
    # Without the gap, neighbouring CpGs across a block edge would share sequence.
    leaky = assign(regions, imr90_sites["chrom"].to_numpy(), pos, 0)
    assert nearest_distance(pos[leaky == "train"], pos[leaky == "test"]).min() < span


def test_test_and_val_are_contiguous_blocks(imr90_sites):
    regions = plan_regions(imr90_sites, ["chr22"], SIZES, SplitConfig(n_blocks=10, test_fraction=0.2, val_fraction=0.1))
    assert len(regions) == 10
    assert (regions["start"].to_numpy()[1:] == regions["end"].to_numpy()[:-1]).all()  # a tiling
    assert regions["start"].iloc[0] == 0 and regions["end"].iloc[-1] == SIZES["chr22"]
    assert (regions["split"] == "test").sum() == 2 and (regions["split"] == "val").sum() == 1


def test_whole_chromosomes_are_held_out_when_there_are_several():
    sites = pd.DataFrame({"chrom": np.repeat(["chr1", "chr2", "chr3", "chr4"], 100), "pos": np.tile(np.arange(100) * 1000, 4)})
    sizes = {c: 1_000_000 for c in ("chr1", "chr2", "chr3", "chr4")}
    regions = plan_regions(sites, list(sizes), sizes, SplitConfig(test_chroms=["chr3"], val_chroms=["chr1"]))
    assert dict(zip(regions["chrom"], regions["split"])) == {"chr1": "val", "chr2": "train", "chr3": "test", "chr4": "train"}
    labels = assign(regions, sites["chrom"].to_numpy(), sites["pos"].to_numpy(), 1001)
    assert (labels[sites["chrom"] == "chr3"] == "test").all() and (labels[sites["chrom"] == "chr2"] == "train").all()
    auto = plan_regions(sites, list(sizes), sizes, SplitConfig(test_fraction=0.25, val_fraction=0.25))
    assert sorted(auto["split"]) == ["test", "train", "train", "val"]
    with pytest.raises(MethrayError, match="chr9"):
        plan_regions(sites, list(sizes), sizes, SplitConfig(test_chroms=["chr9"]))
