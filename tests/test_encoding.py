import numpy as np
import pyfaidx
import pytest

from methray.encoding import (
    MAX_FLANK, WindowSpec, encode_sequence, gather_windows, one_hot, pad_codes, reverse_complement_codes,
    sequence_to_codes, window_content,
)
from methray.genome import Reference

from conftest import FASTA, IMR90, head_lines


def test_known_sequence_to_known_matrix():
    x = encode_sequence("ACgtNRy")
    expected = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        dtype=np.float32,
    )
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, expected)


def test_window_offsets_exclude_the_cpg_itself():
    offsets = WindowSpec(400, exclude_cpg=True).offsets()
    assert len(offsets) == 400
    assert offsets[0] == -200 and offsets[199] == -1 and offsets[200] == 2 and offsets[-1] == 201
    assert 0 not in offsets and 1 not in offsets
    centred = WindowSpec(1001).offsets()
    assert centred[0] == -500 and centred[500] == 0 and centred[-1] == 500


def test_windows_past_contig_edges_are_padded_with_n():
    seq = "CGATTACA"  # CpG at 0; contig of 8 bp
    padded = pad_codes(sequence_to_codes(seq))
    w = gather_windows(padded, np.array([0]), WindowSpec(6, exclude_cpg=True))[0]
    # 3 bases upstream (all off the contig) + 3 downstream of the G: A T T
    np.testing.assert_array_equal(w, [4, 4, 4, 0, 3, 3])
    w_end = gather_windows(padded, np.array([6]), WindowSpec(6))[0]  # centred on 'C' at 6: [3, 9)
    np.testing.assert_array_equal(w_end, sequence_to_codes("TTACA").tolist() + [4])
    assert one_hot(w_end[None])[0, -1].sum() == 0


def test_reverse_complement_and_content():
    codes = sequence_to_codes("AACGTN")
    np.testing.assert_array_equal(reverse_complement_codes(codes), sequence_to_codes("NACGTT"))
    content = window_content(sequence_to_codes("CGCGAANN")[None])
    assert content["cpg_count"][0] == 2
    assert content["gc_fraction"][0] == pytest.approx(4 / 6)
    assert content["n_fraction"][0] == pytest.approx(2 / 8)


def test_vectorised_windows_equal_pyfaidx_fetches_on_real_sites():
    ref = Reference(str(FASTA))
    pos = np.array([int(line.split("\t")[1]) - 1 for line in head_lines(IMR90, 200)])
    spec = WindowSpec(400, exclude_cpg=True)
    windows = ref.windows("chr22", pos, spec)
    fasta = pyfaidx.Fasta(str(FASTA), as_raw=True)
    for i in (0, 57, 199):
        p = int(pos[i])
        expected = fasta["chr22"][p - 200 : p] + fasta["chr22"][p + 2 : p + 202]
        np.testing.assert_array_equal(windows[i], sequence_to_codes(expected))
    # every measured IMR90 site is a CpG of the reference
    contig = ref.contig_codes("chr22")
    assert (contig[pos] == 1).all() and (contig[pos + 1] == 2).all()
    assert ref.codes("chr22").shape == (ref.sizes["chr22"] + 2 * MAX_FLANK,)


@pytest.mark.parametrize("spec", [WindowSpec(400, True), WindowSpec(1001), WindowSpec(7, True), WindowSpec(1), WindowSpec(2, True)])
def test_fast_gather_and_one_hot_equal_plain_fancy_indexing(spec):
    # The encoder copies contiguous spans and looks up 4-byte one-hot words (for speed);
    # it must equal the obvious (N, L) index-matrix gather and (5, 4) table lookup.
    from methray.encoding import ONE_HOT

    ref = Reference(str(FASTA))
    size = ref.sizes["chr22"]
    pos = np.array([int(line.split("\t")[1]) - 1 for line in head_lines(IMR90, 300)] + [0, 1, size - 2, size - 1])
    padded = ref.codes("chr22")
    expected = padded[(pos + MAX_FLANK)[:, None] + spec.offsets()[None, :]]
    got = gather_windows(padded, pos, spec)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(one_hot(got), ONE_HOT[expected])
    assert one_hot(got).dtype == np.uint8 and one_hot(got).shape == (len(pos), spec.length, 4)


def test_encode_batch_keeps_input_order_across_interleaved_chromosomes(tmp_path):
    # Edge case (two contigs, rows interleaved): windows come back in input row order.
    from methray.windows import encode_batch

    fasta = tmp_path / "two.fa"
    fasta.write_text(">a\nACGTACGTCGAAAA\n>b\nTTTTCGGGGGCCCC\n")
    batch = {"chrom": np.array(["b", "a", "b", "a"], dtype=object), "pos": np.array([4, 1, 4, 8]), "beta": np.array([0.1, 0.2, 0.3, 0.4])}
    out = encode_batch(batch, str(fasta), 4, False)
    ref = Reference(str(fasta))
    for i, (chrom, p) in enumerate(zip(batch["chrom"], batch["pos"])):
        np.testing.assert_array_equal(out["x"][i], one_hot(ref.windows(chrom, np.array([p]), WindowSpec(4)))[0])
    np.testing.assert_allclose(out["y"], [0.1, 0.2, 0.3, 0.4])
    assert out["x"][0].argmax(axis=1).tolist() == [3, 3, 1, 2]  # b:[2, 6) = T T C G
