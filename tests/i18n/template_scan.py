"""Finds visible English in Jinja templates that does not go through gettext.

Jinja's own lexer splits a template into markup (`data`) and code. Markup outside `{% trans %}` blocks is
read with the standard HTML parser: text nodes (outside script/style/code/pre) and the attributes people
read (title, placeholder, aria-*, alt, confirm prompts) must hold no words. In code, a string literal that
reads like a sentence or a label ("Prepaid", "no budget") must be the first argument of `_()`/`gettext`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from jinja2 import Environment

# Names and technical words that read the same in every language.
ALLOWED_WORDS = frozenset({
    "A1", "SaaS", "Pro", "LiteLLM", "OpenAI", "curl", "Python", "Node.js", "Node", "openai", "UTC", "HTTP", "PDF",
    "CSV", "URL", "JSON", "RPM", "TPM", "p50", "p95", "ms", "s", "KDV", "ISO", "English", "Türkçe", "USD", "EUR",
    "TRY", "Bearer", "Authorization", "REST", "API", "gpt-4o",
})
READ_ATTRIBUTES = frozenset({"title", "placeholder", "alt", "aria-label", "aria-valuetext", "hx-confirm",
                             "data-confirm", "value"})
SKIPPED_ELEMENTS = frozenset({"script", "style", "code", "pre"})
PLACEHOLDER = "\x00"
PATH = re.compile(r"\S*/\S*")  # /v1/chat/completions, https://...
ATTRIBUTE_TEXT = re.compile(r'[\w-]+="[^"]*"')  # attributes a macro writes into its caller's tag
WORD = re.compile(r"[^\W\d_][\w.'’-]*", re.UNICODE)
GETTEXT_NAMES = frozenset({"_", "gettext", "ngettext", "_l", "lazy_gettext"})
# A literal reads like text when it starts with a capitalised word or holds two lowercase words; file names,
# endpoints, format strings and CSS classes do not.
LABEL_LITERAL = re.compile(r"^[A-Z][a-z]+\b|[a-z]{2,}[ ,;:]+[a-z]{2,}")
FORMAT_LITERAL = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[sdfgxYmdHMSBbp]|%\(|^\{:")
CSS_WORDS = frozenset({"button", "primary", "danger", "small", "badge", "ok", "bad", "warn", "link", "muted",
                       "num", "up", "down", "over", "near", "empty", "field", "inline", "card"})


def visible_words(text: str) -> list[str]:
    without_paths = PATH.sub(" ", ATTRIBUTE_TEXT.sub(" ", text.replace(PLACEHOLDER, " ")))
    return [word for word in WORD.findall(without_paths) if word not in ALLOWED_WORDS]


class _TextFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_ELEMENTS:
            self._skipping += 1
        for name, value in attrs:
            is_button_value = tag == "input" and dict(attrs).get("type") in ("submit", "button", "reset")
            readable = name in READ_ATTRIBUTES and (name != "value" or is_button_value)
            if readable and value and visible_words(value):
                self.found.append(f'{tag} {name}="{value.replace(PLACEHOLDER, "{{…}}")}"')

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_ELEMENTS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping and visible_words(data):
            self.found.append(data.replace(PLACEHOLDER, "{{…}}").strip())


def _split(source: str) -> tuple[str, list[tuple[str, bool]]]:
    """The markup outside trans blocks (code replaced by a placeholder), and every literal in code with
    whether it is a gettext argument."""
    environment = Environment(extensions=["jinja2.ext.i18n", "jinja2.ext.do"])
    markup: list[str] = []
    literals: list[tuple[str, bool]] = []
    in_trans = False
    previous: list[str] = []
    for _line, kind, value in environment.lex(source):
        if kind == "name" and value in ("trans", "endtrans") and previous[-1:] == ["block_begin"]:
            in_trans = value == "trans"
        if kind == "data" and not in_trans:
            markup.append(value)
        elif kind in ("variable_begin", "block_begin"):
            markup.append(PLACEHOLDER)
        elif kind == "string":
            literals.append((value[1:-1], previous[-2:] in (["name:" + n, "operator:("] for n in GETTEXT_NAMES)))
        if kind != "whitespace":
            previous.append(f"{kind}:{value}" if kind in ("name", "operator") else kind)
    return "".join(markup), literals


def _reads_like_text(literal: str) -> bool:
    stripped = literal.strip()
    if not stripped or FORMAT_LITERAL.search(stripped) or set(stripped.split()) <= CSS_WORDS:
        return False
    if not re.search(r"\s", stripped) and re.search(r"[./_]", stripped):
        return False  # a template, an endpoint, a static file
    return bool(LABEL_LITERAL.search(stripped)) and bool(visible_words(stripped))


def untranslated(source: str, allowed_literals: frozenset[str] = frozenset()) -> list[str]:
    markup, literals = _split(source)
    finder = _TextFinder()
    finder.feed(markup)
    finder.close()
    found = list(finder.found)
    found += [f"literal {literal!r}" for literal, wrapped in literals
              if not wrapped and literal not in allowed_literals and _reads_like_text(literal)]
    return found
