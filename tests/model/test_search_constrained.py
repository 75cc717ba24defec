"""Constrained beam search (a caption names one of a photo's confident tag words), and the search
stepping only the rows whose output matters."""

from __future__ import annotations

import numpy as np

from model.search import Search

VOCAB, UNITS, LOCATIONS = 30, 6, 4
START, END, PAD = 1, 2, 0


def _toy_step(calls: list[int]):
    """A deterministic toy decoder: scores depend on the previous token and the hidden state."""
    rng = np.random.default_rng(5)
    embed = rng.normal(size=(VOCAB, UNITS)).astype(np.float32)
    recur = rng.normal(0, 0.5, size=(UNITS, UNITS)).astype(np.float32)
    out = rng.normal(size=(UNITS, VOCAB)).astype(np.float32)
    out[:, 20:] -= 4.0  # words 20.. are unlikely: only a constraint brings them in

    def step(tokens, hidden, memory):
        calls.append(len(tokens))
        (grid,) = memory
        new = np.tanh(embed[tokens] + hidden @ recur + grid.mean(axis=1)[:, :UNITS])
        scores = new @ out
        scores[:, END] += 0.5 * np.arange(1, 2)  # a little pull towards ending
        attention = np.full((len(tokens), LOCATIONS), 1.0 / LOCATIONS, np.float32)
        return new.astype(np.float32), scores.astype(np.float32), attention

    return step


def _inputs(batch=3):
    rng = np.random.default_rng(0)
    return ((rng.normal(size=(batch, LOCATIONS, UNITS)).astype(np.float32),),
            rng.normal(size=(batch, UNITS)).astype(np.float32))


def _search(calls, **kwargs):
    return Search(_toy_step(calls), vocab_size=VOCAB, start_id=START, end_id=END, pad_id=PAD, max_length=8,
                  banned_ids=(PAD, START), **kwargs)


def test_a_constrained_photo_names_a_must_word_and_the_others_are_plain_beam_search():
    memory, hidden = _inputs()
    calls: list[int] = []
    plain = _search(calls).beam(memory, hidden, 3)
    assert not np.isin(plain.tokens[:, 0], [24, 25]).any()  # unlikely words: the plain search avoids them
    must = np.zeros((3, VOCAB), bool)
    must[1, [24, 25]] = True  # photo 1 must name word 24 or 25
    for unmet_rows in (1, 2, 3):
        got = _search([]).beam(memory, hidden, 3, must=must, unmet_rows=unmet_rows)
        assert np.isin(got.tokens[1, 0, :got.lengths[1, 0]], [24, 25]).any()
        for row in (0, 2):  # no constraint: the same captions and scores as plain beam search
            np.testing.assert_array_equal(got.tokens[row], plain.tokens[row])
            np.testing.assert_allclose(got.scores[row], plain.scores[row], rtol=1e-6)


def test_bans_win_over_the_constraint_and_an_unmeetable_one_falls_back():
    memory, hidden = _inputs(1)
    must = np.zeros((1, VOCAB), bool)
    must[0, 24] = True
    ban = np.zeros((1, VOCAB), np.float32)
    ban[0, 24] = -1e9  # the only must word is banned: the unmet hypotheses are what comes back
    got = _search([]).beam(memory, hidden, 3, ban=ban, must=must, unmet_rows=3)
    plain = _search([]).beam(memory, hidden, 3, ban=ban)
    np.testing.assert_array_equal(got.tokens, plain.tokens)  # with as many unmet rows as beams: plain search
    narrow = _search([]).beam(memory, hidden, 3, ban=ban, must=must, unmet_rows=1)
    assert 24 not in narrow.tokens and narrow.lengths[0, 0] > 0


def test_finished_and_dead_hypotheses_are_not_stepped_and_results_do_not_change():
    memory, hidden = _inputs(4)
    calls: list[int] = []
    skipping = _search(calls).beam(memory, hidden, 4)

    class Full(Search):
        def _step_active(self, tokens, hidden, memory, active):
            return self.step(tokens, hidden, memory)

    full_calls: list[int] = []
    full = Full(_toy_step(full_calls), vocab_size=VOCAB, start_id=START, end_id=END, pad_id=PAD, max_length=8,
                banned_ids=(PAD, START)).beam(memory, hidden, 4)
    np.testing.assert_array_equal(skipping.tokens, full.tokens)
    np.testing.assert_allclose(skipping.scores, full.scores, rtol=1e-6)
    assert calls[0] == 4  # at the start only one hypothesis per photo is alive
    assert sum(calls) < sum(full_calls)



def test_a_bundle_asking_for_the_constraint_gets_its_confident_tags_words(tmp_path):
    """``constrain_above`` in a bundle's decoding: the must words are the forms of each photo's tags at
    or above it, less any word the photo or the bundle bans."""
    import json

    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"] |= {"constrain_above": 0.15, "banned_words": ["cats"]}
    (bundle_dir / "config.json").write_text(json.dumps(config))
    captioner = Captioner(load_bundle(bundle_dir), device="cpu")
    tag_map, vocab = captioner.tagger.tag_map, captioner.bundle.vocab
    probs = np.zeros((3, len(tag_map.words)), np.float32)
    probs[0, tag_map.index("cat")] = 0.2
    probs[1, tag_map.index("cat")] = 0.1  # below the threshold
    probs[2, tag_map.index("bus")] = 0.5
    ban = np.zeros((3, len(vocab)), np.float32)
    ban[2, vocab.id_of("bus")] = -1e9  # this photo may not say "bus"
    must = captioner._constraint(probs, ban, 0.15)
    named = [{vocab.word_of(int(i)) for i in np.flatnonzero(row)} for row in must]
    assert "cat" in named[0] and "cats" not in named[0]
    from model.tags import word_forms

    assert named[1] == set() and named[2] == {f for f in word_forms("bus") if f in vocab} - {"bus"}
