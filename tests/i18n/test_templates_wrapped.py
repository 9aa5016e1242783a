"""Every visible word in every template goes through gettext (webapp/templates, scanned by template_scan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.i18n.template_scan import untranslated

TEMPLATES = Path(__file__).resolve().parents[2] / "webapp" / "templates"


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: str(path.name))
def test_template_text_is_translatable(template: Path) -> None:
    assert untranslated(template.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("source", [
    "<p>Hello there</p>",
    '<button aria-label="Close the dialog">x</button>',
    '<input placeholder="Your name">',
    '<form data-confirm="Delete it?"></form>',
    "{{ 'Prepaid' if prepaid else 'Postpaid' }}",
    '{% for value, label in (("a", "Top-up (adds credit)"),) %}{% endfor %}',
    "<p>{{ count }} rows stored</p>",
])
def test_scanner_finds_unwrapped_text(source: str) -> None:
    assert untranslated(source) != []


@pytest.mark.parametrize("source", [
    "<p>{{ _('Hello there') }}</p>",
    "<p>{% trans trimmed %}Hello <b>{{ name }}</b>{% endtrans %}</p>",
    '<button aria-label="{{ _(\'Close %(name)s\', name=x) }}">{{ _(\'Close\') }}</button>',
    '<a class="brand" href="/">A1 SaaS Pro</a><h3>Python (openai)</h3>',
    "<code>flask litellm import-keys</code><pre>curl https://x</pre>",
    '{% include "billing/_balance.html" %}{{ url_for("auth.login") }}{{ x.strftime("%Y-%m") }}',
    '<span class="{{ \'badge ok\' if x }}">{{ ngettext("%(num)s draft", "%(num)s drafts", n) }}</span>',
])
def test_scanner_accepts_translated_and_technical_text(source: str) -> None:
    assert untranslated(source) == []
