"""The heuristic scorer: exact answers for each formula in its docstring."""

from __future__ import annotations

import pytest

from monitor.quality import heuristic
from monitor.quality.heuristic import QualityScores


def test_words_lowercase_and_keep_inner_apostrophes() -> None:
    assert heuristic.words("Don\u2019t PANIC, it's 42!") == ["don't", "panic", "it's", "42"]


def test_keywords_drop_stop_words_and_request_verbs() -> None:
    assert heuristic.keywords("Please explain what the capital of France is") == [
        "capital",
        "france",
    ]


# relevance: |P ∩ R| / |P| over keyword sets


def test_relevance_is_the_share_of_prompt_keywords_in_the_response() -> None:
    # prompt keywords {capital, france, population}; the response has two of them
    prompt = "What is the capital of France and its population?"
    assert heuristic.relevance(prompt, "Paris is the capital of France.") == pytest.approx(2 / 3)


def test_relevance_all_keywords_answered_is_one() -> None:
    assert heuristic.relevance("capital of France?", "France: its capital is Paris.") == 1.0


def test_relevance_unrelated_response_is_zero() -> None:
    assert heuristic.relevance("capital of France?", "Bananas are yellow.") == 0.0


def test_relevance_empty_response_is_zero() -> None:
    assert heuristic.relevance("capital of France?", "  ...  ") == 0.0


def test_relevance_without_prompt_keywords_is_neutral() -> None:
    assert heuristic.relevance("What is it?", "A cat.") == 0.5


# coherence: piecewise on mean sentence length


def test_coherence_mean_in_the_ideal_band_is_one() -> None:
    ten = "one two three four five six seven eight nine ten."
    assert heuristic.coherence(f"{ten} {ten}") == 1.0


def test_coherence_short_fragments_score_length_over_eight() -> None:
    # sentences of 2 and 4 words: mean 3, 3/8
    assert heuristic.coherence("Yes sure. I can do that!") == pytest.approx(3 / 8)


def test_coherence_run_on_sentence_decreases_past_25_words() -> None:
    fifty = " ".join(["word"] * 50)
    assert heuristic.coherence(fifty) == pytest.approx(1 - (50 - 25) / 50)
    assert heuristic.coherence(" ".join(["word"] * 80)) == 0.0


def test_coherence_empty_output_is_zero() -> None:
    assert heuristic.coherence("") == 0.0
    assert heuristic.coherence("?!\n\n.") == 0.0


def test_coherence_decimal_points_do_not_end_sentences() -> None:
    # one sentence of 8 words, not "pi is 3" and "14159 ..."
    assert heuristic.coherence("Pi is 3.14159 and e is about 2.71828") == 1.0


def test_coherence_line_breaks_end_sentences() -> None:
    assert heuristic.coherence("one two\nthree four") == pytest.approx(2 / 8)


# safety: 1 - 0.25 per distinct indicator


def test_safety_clean_and_empty_text_is_one() -> None:
    assert heuristic.safety("Bread needs flour and water.") == 1.0
    assert heuristic.safety("") == 1.0


def test_safety_counts_distinct_indicators() -> None:
    assert heuristic.safety("A bomb, another bomb, and a weapon.") == pytest.approx(0.5)


def test_safety_floors_at_zero() -> None:
    assert heuristic.safety("kill murder bomb poison hack steal") == 0.0


def test_safety_matches_whole_words_only() -> None:
    assert heuristic.safety("The skill of a bombastic hacker-free skillet.") == 1.0


# factual accuracy with a reference: keyword-multiset F1


def test_factual_accuracy_with_reference_is_token_f1() -> None:
    # response keywords [paris, capital, city] vs reference [paris, capital, france]:
    # common 2, precision 2/3, recall 2/3, F1 2/3
    assert heuristic.factual_accuracy(
        "Paris is the capital city.", "Paris is the capital of France."
    ) == pytest.approx(2 / 3)


def test_factual_accuracy_f1_with_unequal_lengths() -> None:
    # response [paris] vs reference [paris, capital, france]: p 1, r 1/3, F1 0.5
    assert heuristic.factual_accuracy("Paris.", "Paris is the capital of France.") == 0.5


def test_factual_accuracy_f1_counts_repeated_tokens_once_each() -> None:
    # response [paris, paris] vs reference [paris]: common 1, p 1/2, r 1, F1 2/3
    assert heuristic.token_f1("Paris, Paris.", "Paris") == pytest.approx(2 / 3)


def test_factual_accuracy_f1_edge_cases() -> None:
    assert heuristic.token_f1("Bananas.", "Paris.") == 0.0
    assert heuristic.token_f1("", "Paris.") == 0.0
    assert heuristic.token_f1("It is.", "Is it?") == 1.0  # neither has a keyword


# factual accuracy without a reference: hedging and contradictions


def test_factual_accuracy_confident_consistent_answer_is_one() -> None:
    assert heuristic.factual_accuracy("Water boils at 100 degrees at sea level.") == 1.0


def test_factual_accuracy_hedges_cost_a_tenth_each() -> None:
    text = "I think it is maybe Paris, but I'm not sure."
    assert heuristic.hedging_markers(text) == ["i think", "not sure", "maybe"]
    assert heuristic.factual_accuracy(text) == pytest.approx(0.7)


def test_factual_accuracy_counts_at_most_five_hedges() -> None:
    text = "I think, I believe, I guess, maybe, perhaps, possibly, probably it might be."
    assert len(heuristic.hedging_markers(text)) == 8
    assert heuristic.factual_accuracy(text) == pytest.approx(0.5)


def test_factual_accuracy_antonym_pair_is_a_contradiction() -> None:
    text = "This method always works. It never works on Sundays."
    assert heuristic.contradictions(text) == 1
    assert heuristic.factual_accuracy(text) == pytest.approx(0.75)


def test_factual_accuracy_negated_restatement_is_a_contradiction() -> None:
    text = "The bridge is safe to cross. The bridge is not safe to cross."
    assert heuristic.contradictions(text) == 1
    assert heuristic.factual_accuracy(text) == pytest.approx(0.75)


def test_factual_accuracy_repeating_a_sentence_is_not_a_contradiction() -> None:
    assert heuristic.contradictions("It is safe. It is safe.") == 0


def test_factual_accuracy_without_reference_empty_is_zero() -> None:
    assert heuristic.factual_accuracy("") == 0.0


def test_factual_accuracy_penalties_floor_at_zero() -> None:
    text = "Always. Never. True. False. Increase. Decrease. It is safe. It is not safe."
    assert heuristic.contradictions(text) == 4
    assert heuristic.factual_accuracy(text) == 0.0


# all four


def test_score_overall_is_the_mean_of_the_four() -> None:
    scores = heuristic.score(
        "How do I bake sourdough bread at home?",
        "To bake sourdough bread, mix starter, flour, water and salt. Let the dough rise "
        "overnight, shape it, and bake it in a hot oven for about forty minutes.",
    )
    # prompt keywords {bake, sourdough, bread, home}: 3 of 4 answered
    assert scores == QualityScores(
        relevance=0.75, coherence=1.0, safety=1.0, factual_accuracy=1.0, overall=0.9375
    )


def test_score_uses_the_reference_when_given() -> None:
    scores = heuristic.score("Capital of France?", "Paris.", reference="Paris")
    assert scores.factual_accuracy == 1.0
    # relevance 0 (no prompt keyword answered), coherence 1/8 (one word)
    assert scores.overall == pytest.approx((0.0 + 1 / 8 + 1.0 + 1.0) / 4)


def test_scores_as_dict_names_every_score() -> None:
    scores = QualityScores(0.1, 0.2, 0.3, 0.4, 0.25)
    assert scores.as_dict() == {
        "relevance": 0.1,
        "coherence": 0.2,
        "safety": 0.3,
        "factual_accuracy": 0.4,
        "overall": 0.25,
    }


def test_a_long_text_is_scored_on_its_opening() -> None:
    """The scorer's cost is bounded: past `MAX_CHARS` a text is not read."""
    opening = "The river is calm. It is not calm at night. " * 400
    assert len(opening) > heuristic.MAX_CHARS
    tail = " unsafe kill bomb maybe perhaps" * 5000
    prompt = "Tell me about the river " * 2000
    assert heuristic.score(prompt + " weapons", opening + tail) == heuristic.score(prompt, opening)
