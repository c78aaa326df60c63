"""Unit tests of the sans-I/O phrase buffer and of clean_for_speech: no trio, no clock."""

from __future__ import annotations

import re

import attrs
import pytest

from trio_voice.config import Config
from trio_voice.phrases import PhraseBuffer, PhraseRules, clean_for_speech

_TOKEN = re.compile(r"\n+|[^\S\n]*(?:\w+|[^\w\s])|[^\S\n]+$")


def tokenize(text: str) -> list[str]:
    """Split text the way an LLM streams it: "Hello", ",", " there", ".", "\\n\\n"."""
    tokens = _TOKEN.findall(text)
    assert "".join(tokens) == text
    return tokens


def phrases(text: str | list[str], rules: PhraseRules | None = None) -> list[str]:
    """All phrases of a whole reply fed at time 0 (so no deadline fires) and flushed."""
    buffer = PhraseBuffer(rules)
    out: list[str] = []
    for token in tokenize(text) if isinstance(text, str) else text:
        out += buffer.feed(token, 0.0)
    return out + buffer.flush()


def feed_all(buffer: PhraseBuffer, tokens: list[str], now: float = 0.0) -> list[list[str]]:
    """What each token's feed returned, in order."""
    return [buffer.feed(token, now) for token in tokens]


# --- sentence ends --------------------------------------------------------------------------------


def test_sentence_end_closes_a_phrase():
    """A period followed by a new sentence ends a phrase."""
    assert phrases("Hello there. How are you?") == ["Hello there.", "How are you?"]


def test_exclamation_and_question_marks_close_phrases():
    """Exclamation and question marks end phrases, also in a run like "?!"."""
    assert phrases("Wow! Really?! Yes.") == ["Wow!", "Really?!", "Yes."]


def test_sentence_end_waits_for_the_next_non_space_character():
    """A period is only judged once the next non-space character arrives."""
    buffer = PhraseBuffer()
    assert feed_all(buffer, ["It", " costs", " $", "29", ".", " "]) == [[]] * 6
    assert buffer.feed("Next", 0.0) == ["It costs $29."]


def test_price_then_new_sentence():
    """ "It costs $29. Next item" is cut after the price."""
    assert phrases("It costs $29. Next item") == ["It costs $29.", "Next item"]


def test_decimal_number_is_not_a_sentence_end():
    """The period inside "3.14" does not end a sentence."""
    assert phrases("Pi is 3.14 today.") == ["Pi is 3.14 today."]


def test_price_with_cents_is_not_a_sentence_end():
    """The period inside "$29.99" does not end a sentence, even when "99" arrives as its own token."""
    assert phrases(["It", " is", " $", "29", ".", "99", " now", "."]) == ["It is $29.99 now."]


def test_title_abbreviation_is_not_a_sentence_end():
    """ "Dr. Smith arrived." stays one phrase."""
    assert phrases("Dr. Smith arrived.") == ["Dr. Smith arrived."]


@pytest.mark.parametrize("abbreviation", ["Mr.", "Mrs.", "Ms.", "St.", "vs.", "Prof."])
def test_listed_abbreviations_before_a_capital_are_not_sentence_ends(abbreviation):
    """A listed abbreviation followed by a capitalized word does not end a sentence."""
    text = f"We met {abbreviation} Jones today."
    assert phrases(text) == [text]


def test_e_g_followed_by_lowercase_is_not_a_sentence_end():
    """ "e.g. apples" stays inside its sentence."""
    assert phrases("Eat fruit, e.g. apples. Then rest.") == ["Eat fruit, e.g. apples.", "Then rest."]


def test_etc_followed_by_lowercase_is_not_a_sentence_end():
    """ "etc." followed by a lowercase word continues the sentence."""
    assert phrases("Bring pens, paper etc. and a bag.") == ["Bring pens, paper etc. and a bag."]


def test_etc_followed_by_a_capital_ends_the_sentence():
    """ "etc." followed by a capitalized word ends the sentence."""
    assert phrases("Bring pens, paper etc. Then go.") == ["Bring pens, paper etc.", "Then go."]


def test_single_initials_are_not_sentence_ends():
    """ "J. R. R. Tolkien" keeps its initials with the name."""
    assert phrases("J. R. R. Tolkien wrote it. Yes.") == ["J. R. R. Tolkien wrote it.", "Yes."]


def test_ellipsis_followed_by_lowercase_continues():
    """An ellipsis followed by a lowercase word does not end the phrase."""
    assert phrases("Well... maybe not. Well… perhaps.") == ["Well... maybe not.", "Well… perhaps."]


def test_ellipsis_followed_by_a_capital_ends_the_phrase():
    """An ellipsis followed by a capitalized word ends the phrase."""
    assert phrases("Hmm... Okay then.") == ["Hmm...", "Okay then."]


def test_closing_quote_stays_with_its_sentence():
    """Closing quotes after a sentence end belong to the phrase that ends."""
    assert phrases('He said "stop." Then he left.') == ['He said "stop."', "Then he left."]


def test_cjk_sentence_ends_close_without_spaces():
    """CJK full stops, exclamation and question marks end phrases without a following space."""
    tokens = ["你好", "。", "我很好", "！", "谢谢", "？", "好"]
    assert phrases(tokens) == ["你好。", "我很好！", "谢谢？", "好"]


def test_semicolon_ends_a_phrase_with_enough_words():
    """A semicolon ends a phrase once the phrase has the minimum number of words."""
    assert phrases("I will go now; you stay.") == ["I will go now;", "you stay."]


def test_semicolon_after_too_few_words_does_not_end_a_phrase():
    """A semicolon after fewer than the minimum words keeps the phrase going."""
    assert phrases("Red; blue; green.") == ["Red; blue; green."]


# --- natural pauses -------------------------------------------------------------------------------


def test_comma_and_connector_split_the_first_phrase():
    """A comma followed by a connector ends the phrase at the comma; the connector starts the next."""
    text = "I checked the weather, and it looks sunny today."
    assert phrases(text) == ["I checked the weather,", "and it looks sunny today."]


@pytest.mark.parametrize("connector", ["but", "so", "then", "because", "however", "although", "which", "or"])
def test_other_connectors_split_too(connector):
    """Every default connector after a comma opens a new phrase."""
    assert phrases(f"We tried it twice, {connector} nothing changed.") == [
        "We tried it twice,",
        f"{connector} nothing changed.",
    ]


@pytest.mark.parametrize("pause", [":", " —", " –", " -"])
def test_colon_and_dashes_are_pauses_too(pause):
    """A colon or a dash followed by a connector ends the phrase at the punctuation."""
    assert phrases(f"There is one catch{pause} however it is small.") == [
        f"There is one catch{pause}",
        "however it is small.",
    ]


def test_comma_without_connector_does_not_split():
    """After the first phrase, a comma followed by an ordinary word keeps the phrase going."""
    assert phrases("Here you go. I bought apples, pears and plums.") == [
        "Here you go.",
        "I bought apples, pears and plums.",
    ]


def test_the_first_phrase_ends_at_any_comma_after_enough_words():
    """The first phrase, whose audio the user waits for, ends at the first pause after three words."""
    assert phrases("A spider has eight legs, two body parts and no antennae.") == [
        "A spider has eight legs,",
        "two body parts and no antennae.",
    ]
    assert phrases("Yes, pears are fine.") == ["Yes, pears are fine."]  # one word: too short to stand alone


def test_connector_must_be_a_whole_word():
    """A word that only starts like a connector ("andromeda") is no pause."""
    text = [
        "Look",
        ".",
        " We",
        " looked",
        " up",
        " at",
        " the",
        " night",
        ",",
        " and",
        "romeda",
        " shone",
        ".",
    ]
    assert phrases(text) == ["Look.", "We looked up at the night, andromeda shone."]


def test_pause_waits_until_the_connector_word_is_complete():
    """The comma cut happens when the token after the connector arrives."""
    buffer = PhraseBuffer()
    assert feed_all(buffer, ["I", " checked", " the", " weather", ",", " and"]) == [[]] * 6
    assert buffer.feed(" it", 0.0) == ["I checked the weather,"]


def test_first_phrase_needs_its_minimum_words_before_a_pause():
    """A first phrase shorter than first_phrase_min_words does not end at a comma + connector."""
    assert phrases("Well, and then we left.") == ["Well, and then we left."]


def test_later_phrases_need_more_words_before_a_pause():
    """After the first phrase, a short clause does not end at a comma + connector."""
    assert phrases("Yes. I think so, but we will see.") == ["Yes.", "I think so, but we will see."]


def test_later_phrase_with_enough_words_splits_at_a_pause():
    """After the first phrase, a clause of min_words words ends at a comma + connector."""
    text = "Yes. I think the plan is good, but we will see."
    assert phrases(text) == ["Yes.", "I think the plan is good,", "but we will see."]


def test_connectors_come_from_the_rules():
    """A custom connector list replaces the default one."""
    rules = PhraseRules(connectors={"unless"})
    assert phrases("Right. We can go there now, and we can stay.", rules) == [
        "Right.",
        "We can go there now, and we can stay.",
    ]
    assert phrases("Right. We can all go there now, unless it rains.", rules) == [
        "Right.",
        "We can all go there now,",
        "unless it rains.",
    ]


# --- forced cuts ----------------------------------------------------------------------------------


def test_deadline_is_none_when_empty():
    """An empty buffer, or one holding only whitespace, has no deadline."""
    buffer = PhraseBuffer()
    assert buffer.deadline() is None
    buffer.feed("  \n", 1.0)
    assert buffer.deadline() is None


def test_deadline_is_max_wait_after_the_phrases_first_token():
    """The deadline is max_wait seconds after the pending phrase's first token, not its last."""
    buffer = PhraseBuffer(PhraseRules(max_wait=2.0))
    feed_all(buffer, ["This"], now=10.0)
    feed_all(buffer, [" is"], now=11.5)
    assert buffer.deadline() == 12.0


def test_poll_before_the_deadline_returns_nothing():
    """poll before the deadline leaves the pending phrase alone."""
    buffer = PhraseBuffer()
    buffer.feed("This is slow", 0.0)
    assert buffer.poll(1.999) == []


def test_poll_at_the_deadline_cuts_at_the_last_word_boundary():
    """At the deadline the phrase is forced out up to its last word; the unfinished word stays."""
    buffer = PhraseBuffer()
    for now, token in [(0.0, "This"), (0.5, " is"), (1.0, " a"), (1.5, " slow")]:
        assert buffer.feed(token, now) == []
    assert buffer.poll(2.0) == ["This is a"]
    assert buffer.flush() == ["slow"]


def test_carried_word_dates_the_next_phrase():
    """The word kept after a forced cut starts the next phrase at the time its token arrived."""
    buffer = PhraseBuffer()
    for now, token in [(0.0, "This"), (0.5, " is"), (1.0, " a"), (1.5, " slow")]:
        buffer.feed(token, now)
    buffer.poll(2.0)
    assert buffer.deadline() == 3.5


def test_poll_with_trailing_space_sends_everything():
    """When the pending text ends with a space, its last word is complete and goes out too."""
    buffer = PhraseBuffer()
    feed_all(buffer, ["Hold", " on", " "])
    assert buffer.poll(2.0) == ["Hold on"]
    assert buffer.deadline() is None


def test_poll_of_a_single_word_sends_it_whole():
    """A pending text without any word boundary is forced out whole."""
    buffer = PhraseBuffer()
    feed_all(buffer, ["Supercalifragilistic"])
    assert buffer.poll(2.0) == ["Supercalifragilistic"]


def test_poll_leaves_no_overdue_deadline():
    """After poll, the deadline is in the future or absent, even when one token held several words."""
    buffer = PhraseBuffer()
    buffer.feed("Hello there", 0.0)
    assert buffer.poll(2.0) == ["Hello", "there"]
    assert buffer.deadline() is None


def test_late_feed_also_forces_an_overdue_phrase():
    """A token fed after the deadline has passed also returns the overdue phrase."""
    buffer = PhraseBuffer()
    buffer.feed("Waiting", 0.0)
    assert buffer.feed(" long", 2.5) == ["Waiting"]
    assert buffer.deadline() == 4.5


def test_max_tokens_forces_a_later_phrase_out():
    """After the first phrase, max_tokens tokens force the phrase out at its last word boundary."""
    rules = PhraseRules(max_tokens=5, first_phrase_max_tokens=50)
    buffer = PhraseBuffer(rules)
    assert buffer.feed("Hi.", 0.0) == []
    assert feed_all(buffer, [" One", " two", " three", " four"]) == [["Hi."], [], [], []]
    assert buffer.feed(" five", 0.0) == ["One two three four"]
    assert buffer.flush() == ["five"]


def test_max_tokens_never_splits_a_word():
    """A word longer than the token limit is kept whole until a word boundary arrives."""
    buffer = PhraseBuffer(PhraseRules(first_phrase_max_tokens=3))
    assert feed_all(buffer, ["$", "12", ".", "50", ","]) == [[]] * 5
    assert buffer.feed(" then", 0.0) == ["$12.50,"]


def test_first_phrase_uses_the_shorter_token_limit():
    """The first phrase is forced out after first_phrase_max_tokens, later ones after max_tokens."""
    rules = PhraseRules(first_phrase_max_tokens=3, max_tokens=5)
    words = " a b c d e f g h i j".split(" ")
    assert phrases([f" {word}" for word in words if word], rules) == ["a b", "c d e f", "g h i j"]


def test_cut_phrases_do_not_lose_tokens():
    """Forced cuts by tokens keep every word, in order."""
    rules = PhraseRules(first_phrase_max_tokens=4, max_tokens=7)
    words = [f"word{i}" for i in range(40)]
    assert " ".join(phrases([f" {word}" for word in words], rules)) == " ".join(words)


# --- lines and lists ------------------------------------------------------------------------------


def test_newline_ends_a_phrase():
    """A newline ends a phrase even without punctuation."""
    assert phrases("Here it is\nand here") == ["Here it is", "and here"]


def test_paragraph_break_makes_no_empty_phrase():
    """A blank line between paragraphs yields no empty phrase."""
    assert phrases("First part.\n\n\nSecond part.") == ["First part.", "Second part."]


def test_numbered_list_items_are_phrases_without_their_numbers():
    """Each numbered list item is its own phrase, and "1." is not read as a sentence end."""
    assert phrases("Steps:\n1. Open the door\n2. Walk in") == ["Steps:", "Open the door", "Walk in"]


def test_bulleted_list_items_are_phrases_without_their_bullets():
    """Each bulleted item is its own phrase, without its bullet."""
    assert phrases("- Apples\n* Pears\n+ Plums") == ["Apples", "Pears", "Plums"]


# --- cleaning -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("This is **very** important.", "This is very important."),
        ("This is *quite* nice.", "This is quite nice."),
        ("This is __bold__ and _italic_ text.", "This is bold and italic text."),
        ("## A heading", "A heading"),
        ("- a list item", "a list item"),
        ("* a list item", "a list item"),
        ("12. a numbered item", "a numbered item"),
        ("Run `make test` now.", "Run make test now."),
        ("```python", ""),
        ("See [the docs](https://example.com/docs) first.", "See the docs first."),
        ("| Name | Age |", "Name, Age"),
        ("|------|:---:|", ""),
        ("> quoted words", "quoted words"),
        ("~~old~~ new", "old new"),
    ],
)
def test_markdown_is_removed(raw, spoken):
    """Markdown markup is removed and only its words are kept."""
    assert clean_for_speech(raw) == spoken


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("Great job 🎉!", "Great job!"),
        ("👍 Sounds good", "Sounds good"),
        ("Family 👨‍👩‍👧 time ❤️.", "Family time."),
        ("Press 1️⃣ now ★", "Press 1 now"),
        ("Arrows → and ✓ marks", "Arrows and marks"),
    ],
)
def test_emoji_and_unsayable_symbols_are_removed(raw, spoken):
    """Emoji (with their joiners and variation selectors) and other symbols are removed."""
    assert clean_for_speech(raw) == spoken


def test_currency_percent_and_punctuation_are_kept():
    """Currency signs, percent signs and normal punctuation survive cleaning."""
    text = "It costs $29.99, €5 or £3 (about 50%): yes; no? “Quoted” — fine…"
    assert clean_for_speech(text) == text


def test_letters_of_other_scripts_and_accents_are_kept():
    """Letters of any script and combining accents survive cleaning."""
    text = "Café naïve Ελληνικά русский 你好 नमस्ते"
    assert clean_for_speech(text) == text


def test_whitespace_is_collapsed():
    """Runs of spaces, tabs and newlines become single spaces, trimmed at both ends."""
    assert clean_for_speech("  one \t two\n\nthree  ") == "one two three"


def test_text_without_letters_or_digits_cleans_to_empty():
    """Text with nothing speakable left cleans to an empty string."""
    assert clean_for_speech("** 🎉 — !") == ""


def test_phrases_empty_after_cleaning_are_dropped():
    """A phrase with nothing speakable is not handed out."""
    assert phrases("```\nHello there.\n🎉🎉\n---\nBye.") == ["Hello there.", "Bye."]


def test_phrases_are_cleaned():
    """Phrases come out of the buffer already cleaned."""
    assert phrases("**Note.** Visit [our site](http://x.example) 😀 today.") == [
        "Note.",
        "Visit our site today.",
    ]


# --- end of stream and whole replies --------------------------------------------------------------


def test_flush_returns_the_rest():
    """flush hands out the unfinished phrase."""
    buffer = PhraseBuffer()
    feed_all(buffer, ["It", " costs", " $", "29", "."])
    assert buffer.flush() == ["It costs $29."]
    assert buffer.deadline() is None


def test_flush_of_an_empty_buffer_returns_nothing():
    """flush with nothing pending returns an empty list."""
    assert PhraseBuffer().flush() == []


def test_flush_starts_a_new_reply():
    """After flush, the next phrase counts as a first phrase again (shorter minimum before a pause)."""
    assert phrases("Sure. I said it, and I meant it.") == ["Sure.", "I said it, and I meant it."]
    buffer = PhraseBuffer()
    assert feed_all(buffer, tokenize("Sure.")) == [[], []]
    assert buffer.flush() == ["Sure."]
    out = [p for token in tokenize("I said it, and I meant it.") for p in buffer.feed(token, 0.0)]
    assert out + buffer.flush() == ["I said it,", "and I meant it."]


REPLY = (
    "## Trip plan\n\n"
    "Sure! Dr. Lee says the museum opens at 9 a.m. and costs $12.50, but students pay less. "
    "Bring water, snacks, etc. and a map. "
    "It is about 3.5 km away — so you can walk, although a bus is quicker.\n\n"
    "1. **Visit** the museum\n"
    "2. Have lunch at [Café Rosa](https://example.com) 🍝\n"
    "- Walk back along the river; the view is lovely.\n\n"
    "Enjoy your day… and take photos!"
)


def test_joined_phrases_reproduce_the_cleaned_text():
    """Joining all phrases of a reply with spaces gives the whole cleaned reply: no word is lost or moved."""
    out = phrases(REPLY)
    assert len(out) > 5
    assert " ".join(out) == clean_for_speech(REPLY)


def test_forced_cuts_also_keep_every_word():
    """With tiny token limits, joined phrases of plain prose still reproduce the cleaned text."""
    text = "Dr. Lee says the museum opens at 9 a.m. and costs $12.50, but students pay less. Bye."
    out = phrases(text, PhraseRules(first_phrase_max_tokens=2, max_tokens=3))
    assert len(out) > 8
    assert " ".join(out) == clean_for_speech(text)


def test_token_granularity_does_not_change_the_phrases():
    """Feeding a reply one character at a time gives the same phrases as word-sized tokens."""
    rules = PhraseRules(first_phrase_max_tokens=10_000, max_tokens=10_000)
    assert phrases(list(REPLY), rules) == phrases(REPLY, rules)


# --- settings -------------------------------------------------------------------------------------


def test_rules_come_from_the_config():
    """PhraseRules.from_config copies the phrase settings of Config."""
    config = attrs.evolve(
        Config(),
        phrase_max_wait=1.5,
        phrase_max_tokens=40,
        first_phrase_min_words=2,
        first_phrase_max_tokens=10,
    )
    rules = PhraseRules.from_config(config)
    assert (
        rules.max_wait,
        rules.max_tokens,
        rules.first_phrase_min_words,
        rules.first_phrase_max_tokens,
    ) == (
        1.5,
        40,
        2,
        10,
    )


def test_rules_reject_nonsense():
    """A non-positive wait or token limit is refused when the rules are built."""
    with pytest.raises(ValueError):
        PhraseRules(max_wait=0)
    with pytest.raises(ValueError):
        PhraseRules(max_tokens=0)
