"""The Turkish catalog covers every translatable string in the code and templates, placeholders intact."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "webapp" / "translations" / "tr" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\(\w+\)s|%%")
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}


def extracted_ids() -> set[str | tuple[str, ...]]:
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def tr_catalog() -> dict[str | tuple[str, ...], object]:
    with CATALOG.open("rb") as po:
        catalog = read_po(po, locale="tr")
    return {message.id: message for message in catalog if message.id}


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def test_every_extracted_string_has_a_turkish_translation() -> None:
    catalog = tr_catalog()
    ids = extracted_ids()
    assert len(ids) > 500  # the extraction really read the code and the templates
    missing = sorted(str(message_id) for message_id in ids if message_id not in catalog)
    assert missing == [], "run `make messages` and translate the new entries"
    untranslated = []
    for message_id in ids:
        message = catalog[message_id]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            untranslated.append(str(message_id))
    assert untranslated == []


def test_translations_keep_their_placeholders() -> None:
    wrong = []
    for message_id, message in tr_catalog().items():
        originals = message_id if isinstance(message_id, tuple) else (message_id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for original, translated in zip(originals, strings, strict=False):
            if placeholders(original) != placeholders(translated):
                wrong.append(f"{original!r} -> {translated!r}")
    assert wrong == []


def test_turkish_plural_forms_are_declared() -> None:
    assert "nplurals=2" in CATALOG.read_text(encoding="utf-8")
