"""The pages' words in English and Simplified Chinese: one catalogue, message id ->
text per language, joined from one module per area (`portal/words/`). A missing
translation falls back to English, and a missing id shows the id itself, so a gap is
visible rather than a crash."""

from __future__ import annotations

from collections.abc import Callable

from medchain.portal.words import admin, clinician, common, explorer, patient, regulator

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"


def catalogue(*areas: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The areas' words as one catalogue; an id two areas define is a mistake."""
    joined: dict[str, dict[str, str]] = {}
    for words in areas:
        twice = joined.keys() & words.keys()
        if twice:
            raise ValueError(f"portal words defined twice: {sorted(twice)}")
        joined |= words
    return joined


CATALOGUE: dict[str, dict[str, str]] = catalogue(
    common.WORDS, patient.WORDS, clinician.WORDS, admin.WORDS, regulator.WORDS, explorer.WORDS
)


def language_of(value: str | None) -> str:
    """A supported language for a cookie or query value, else the default."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """`t(id, **fields)` in `language`: the text, with `{field}`s filled in."""

    def t(message_id: str, **fields: object) -> str:
        texts = CATALOGUE.get(message_id)
        if texts is None:
            return message_id
        text = texts.get(language) or texts[DEFAULT_LANGUAGE]
        return text.format(**fields) if fields else text

    return t
