"""Tests of SMS encoding and length, GSM-7 transliteration, LIX and HTML-to-text."""

from __future__ import annotations

import pytest

from tasks.textmetrics import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    LixInfo,
    NotGsm7Error,
    SmsInfo,
    html_to_text,
    is_gsm7,
    lix,
    lix_band,
    lix_info,
    sms_info,
    to_gsm7,
)

# --- GSM-7 ----------------------------------------------------------------------------------


def test_tables_have_the_sizes_of_gsm_03_38() -> None:
    # 128 code points minus ESC; the extension table has 10 printable entries incl. form feed.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hej! Betal din gæld på Mit betalingsoverblik: 250 kr.", True),
        ("ÆØÅ æøå é É ä ö ü Ü à ß", True),
        ("{}[]~\\^|€", True),
        ("Café ô", False),  # ô is not GSM
        ("Betal – nu", False),  # en dash
        ("“citat”", False),
        ("ç", False),  # only capital Ç is in the table
        ("😀", False),
        ("", True),
    ],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Betal – nu — i dag", "Betal - nu - i dag"),
        ("“Mit betalingsoverblik” og ‘MitID’", "\"Mit betalingsoverblik\" og 'MitID'"),
        ("«Borgerservice»", '"Borgerservice"'),
        ("Vent…", "Vent..."),
        ("250\u00a0kr. kl.\u202f10\u2009–\u200912", "250 kr. kl. 10 - 12"),
        ("rôti Škoda Łódź façade naïve", "roti Skoda Lodz facade naive"),
        ("bib\u00adlio\u200btek", "bibliotek"),
        ("• Betal med kort", "- Betal med kort"),
        ("ﬁlm", "film"),
        ("Ærø, Århus, Ødsted, Å", "Ærø, Århus, Ødsted, Å"),  # already GSM: untouched
        ("{}[]€", "{}[]€"),
    ],
)
def test_to_gsm7_transliterates(text: str, expected: str) -> None:
    result = to_gsm7(text)
    assert result == expected
    assert is_gsm7(result)


def test_to_gsm7_names_each_untransliterable_character_once() -> None:
    with pytest.raises(NotGsm7Error) as info:
        to_gsm7("Hej 😀 Привет 😀 ð")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.characters == ["😀", "П", "р", "и", "в", "е", "т", "ð"]
    assert "U+1F600" in str(err)
    assert "U+00F0" in str(err)


# --- SMS length -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsInfo("GSM-7", 0, 1)),
        ("a" * 160, SmsInfo("GSM-7", 160, 1)),
        ("a" * 161, SmsInfo("GSM-7", 161, 2)),
        ("a" * 306, SmsInfo("GSM-7", 306, 2)),
        ("a" * 307, SmsInfo("GSM-7", 307, 3)),
        ("æøå" * 50, SmsInfo("GSM-7", 150, 1)),  # Danish letters are one septet each
        ("€" * 80, SmsInfo("GSM-7", 160, 1)),  # extension characters cost two
        ("a" * 159 + "€", SmsInfo("GSM-7", 161, 2)),
        # "€" would straddle parts 1 and 2, so it moves whole: 306 septets need 3 parts, not 2.
        ("a" * 152 + "€" + "a" * 152, SmsInfo("GSM-7", 306, 3)),
        ("ô" * 70, SmsInfo("UCS-2", 70, 1)),
        ("ô" * 71, SmsInfo("UCS-2", 71, 2)),
        ("ô" * 134, SmsInfo("UCS-2", 134, 2)),
        ("ô" * 135, SmsInfo("UCS-2", 135, 3)),
        ("😀" * 35, SmsInfo("UCS-2", 70, 1)),  # outside the BMP: a surrogate pair each
        ("a" + "😀" * 33 + "a", SmsInfo("UCS-2", 68, 1)),
    ],
)
def test_sms_info(text: str, expected: SmsInfo) -> None:
    assert sms_info(text) == expected


def test_sms_info_does_not_transliterate() -> None:
    # One dash turns a whole message into UCS-2: that is why to_gsm7 exists.
    assert sms_info("Betal nu – " + "a" * 60).encoding == "UCS-2"
    assert sms_info(to_gsm7("Betal nu – " + "a" * 60)).encoding == "GSM-7"


# --- LIX ------------------------------------------------------------------------------------


def test_lix_of_a_simple_text_by_hand() -> None:
    # 8 words, 2 sentences, long: "skylder", "biblioteket", "kommunen", "fakturaen" (4).
    text = "Du skylder biblioteket penge. Nu sender kommunen fakturaen."
    assert lix_info(text) == LixInfo(words=8, sentences=2, long_words=4, score=54.0)
    assert lix(text) == pytest.approx(8 / 2 + 100 * 4 / 8)


@pytest.mark.parametrize(
    ("text", "words", "sentences", "long_words"),
    [
        # digits are no words; "kr." is no sentence end; "30. november" is a Danish date
        ("Gebyret er 250 kr. og betales inden 30. november.", 7, 1, 3),
        # hyphenated words are one word; letters only are counted (e-mail: 5 letters)
        ("Skriv en e-mail om MitID-login!", 5, 1, 1),
        # ":" and "?" end sentences
        ("Husk: Har du spørgsmål? Ring.", 5, 3, 1),
        # a "." inside a number or an address is no end; the address is one word, not a long one
        ("Se 1.000 svar på www.eksempel.dk/betalingsoverblik i dag.", 6, 1, 0),
        # a heading line without punctuation is a sentence; so is each list item
        ("Sådan betaler du\n\n- Med kort\n- Med MobilePay\nLæs mere.", 9, 4, 2),
        # a wrapped line (starts lower case) continues the sentence, as in PDF text
        ("Fra 1. marts går dine\nmellemværender til kommunen.", 7, 1, 2),
        # "f.eks." is one word and, even before a capital, no end; "..." ends a sentence
        ("Betal f.eks. Digital Post... Tak!", 5, 2, 1),
        # closing quote after the full stop
        ('Der står "betal nu." Derefter intet.', 6, 2, 1),
    ],
)
def test_lix_counting_rules(text: str, words: int, sentences: int, long_words: int) -> None:
    info = lix_info(text)
    assert (info.words, info.sentences, info.long_words) == (words, sentences, long_words)


def test_lix_long_word_is_more_than_six_letters() -> None:
    assert lix_info("Bøgerne.").long_words == 1  # 7 letters
    assert lix_info("Bogens.").long_words == 0  # 6 letters


def test_lix_of_text_without_words_is_an_error() -> None:
    with pytest.raises(ValueError, match="without words"):
        lix("250 - 24-72.")


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0, "very easy"),
        (24.9, "very easy"),
        (25, "easy"),
        (34.99, "easy"),
        (35, "medium"),
        (44.5, "medium"),
        (45, "hard"),
        (54.9, "hard"),
        (55, "very hard"),
        (80, "very hard"),
    ],
)
def test_lix_band(score: float, band: str) -> None:
    assert lix_band(score) == band


# --- HTML to text ---------------------------------------------------------------------------

_ARTICLE = """<!doctype html>
<html lang="da"><head><title>Overskrift i fanen</title>
<style>p { color: red }</style><script>var skjult = "ikke tekst";</script></head>
<body>
<nav hidden><a href="/">Menu</a></nav>
<main>
<h1>Nyt om betaling af gæld</h1>
<p>Fra 1. marts   sender kommunen
   fakturaen. Du betaler på <a href="https://www.eksempel.dk/">Mit&nbsp;betalingsoverblik</a>.</p>
<ul><li>Med kort</li><li>Med MobilePay</li></ul>
<p>Adresse<br>Bibliotekvej 1</p>
<svg><title>Ikon</title></svg>
<span aria-hidden="true">★</span>
<img src="x.png" alt="Billede af plakat">
</main>
</body></html>"""


def test_html_to_text_keeps_visible_text_in_blocks() -> None:
    text = html_to_text(_ARTICLE)
    assert text.split("\n\n") == [
        "Nyt om betaling af gæld",
        "Fra 1. marts sender kommunen fakturaen. Du betaler på Mit betalingsoverblik.",
        "Med kort",
        "Med MobilePay",
        "Adresse\nBibliotekvej 1",
    ]


def test_html_to_text_skips_invisible_parts() -> None:
    text = html_to_text(_ARTICLE)
    for invisible in ("Overskrift i fanen", "color", "skjult", "Menu", "Ikon", "★", "Billede"):
        assert invisible not in text


def test_lix_of_an_html_article() -> None:
    # Heading (5 words), 2 sentences, 2 list items, 2 lines of the address: 7 sentences.
    info = lix_info(html_to_text(_ARTICLE))
    assert info.sentences == 7
    assert info.words == 5 + 10 + 2 + 2 + 2
