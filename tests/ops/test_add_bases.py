"""What `add` stores a file's chunks against: `DeltaChoice`, which way each tensor's blocks are
encoded (both ways while it learns, then the way that won, probing both again now and then)."""

from __future__ import annotations

from mlvc.ops.add_bases import DeltaChoice

W = ("layer.weight", "float32", (200, 1000))
M = ("exp_avg", "float32", (200, 1000))


def test_a_tensor_is_encoded_both_ways_until_one_way_won_its_first_blocks():
    choice = DeltaChoice()
    for _ in range(DeltaChoice.LEARN):
        assert choice.way(W) == DeltaChoice.BOTH
        choice.learn(W, delta_won=True)
    assert choice.way(W) == DeltaChoice.DELTA
    assert choice.way(M) == DeltaChoice.BOTH  # another tensor learns on its own


def test_a_probe_every_probe_th_block_and_a_disagreeing_probe_starts_learning_over():
    choice = DeltaChoice()
    ways = []
    for _ in range(2 * DeltaChoice.PROBE):
        way = choice.way(M)
        ways.append(way)
        if way == DeltaChoice.BOTH:
            choice.learn(M, delta_won=False)
    assert ways[:DeltaChoice.LEARN] == [DeltaChoice.BOTH] * DeltaChoice.LEARN
    probes = [i + 1 for i, w in enumerate(ways) if w == DeltaChoice.BOTH][DeltaChoice.LEARN:]
    assert probes == [DeltaChoice.PROBE, 2 * DeltaChoice.PROBE]
    assert ways.count(DeltaChoice.OWN) == 2 * DeltaChoice.PROBE - DeltaChoice.LEARN - 2
    while choice.way(M) != DeltaChoice.BOTH:
        pass
    choice.learn(M, delta_won=True)  # the probe disagrees: both ways again until one wins twice
    assert choice.way(M) == DeltaChoice.BOTH
    choice.learn(M, delta_won=True)
    assert choice.way(M) == DeltaChoice.DELTA
