"""The HTML report (``scan --format html``, ``report --html FILE``): what the page holds, checked on the
generated file, and how it behaves, checked in headless Chromium (``tests/browser.py``): it renders, its
charts draw, search and filters hide rows, package content stays inert text, it requests nothing, it reads
without JavaScript, and its layout matches a reference screenshot.

The reference screenshot is ``tests/fixtures/html_report_layout.png``. After an intended change of the
page's look, regenerate it (on the CI machine kind: Debian's Chromium and fonts) with
``DFH_UPDATE_SCREENSHOTS=1 python -m pytest tests/test_html_report.py -k layout`` and commit it.
"""

from __future__ import annotations

import gc
import html
import io
import json
import os
import random
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid import html_report
from dragonfly_hybrid._core import Rules, Scanner
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.html_report import (
    SNIPPET_CHARS,
    DayCount,
    FindingRow,
    Page,
    RuleCount,
    Snippet,
    embedded_json,
    every_day,
    make_snippet,
    page_from_store,
    page_from_targets,
    render_page,
)
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import LIGHT_MARKER, LIGHT_RULE, MARKER, MARKER_RULE, sdist, tar_gz_bytes, write

HOSTILE = "</script><img src=x onerror=window.pwned=1>"
HOSTILE_RULE = r"""
rule hostile_markup {
  meta:
    weight = 7
    description = "markup that would run if a report pasted it unescaped"
  strings:
    $markup = /<\/script><img[^\n]{0,60}>/
  condition:
    $markup
}
"""
HOSTILE_LABEL_HTML = html.escape(f"hostile-1.0.tar.gz/hostile-1.0/{HOSTILE}.py")
SPOOFING_NAMES = {
    "invoice\u202etxt.exe.py": "invoice\\u202etxt.exe.py",  # right-to-left override: "invoice1:yp.exe.txt"
    "se\u200btup.py": "se\\u200btup.py",  # zero-width space: "setup.py"
    "aaaa\rZZ.py": "aaaa\\rZZ.py",  # carriage return
}
"""Member names that would disguise themselves if shown raw, and how the table and markdown reports write
them."""
SPOOFING_LINE = "x = '\u202egnp.exe\u200b' \r\u2066 # "
SPOOFING_LINE_SHOWN = "x = '\\u202egnp.exe\\u200b' \\r\\u2066 # "
# CPython ends a line at a lone CR: each `.py` member is also scanned as it reads it, where the marker is on
# line 2, after the CR.
READING = "<as Python reads it>"
SPOOFING_READ_LINE = "\u2066 # "
SPOOFING_READ_LINE_SHOWN = "\\u2066 # "
REFERENCE_SCREENSHOT = Path(__file__).parent / "fixtures" / "html_report_layout.png"
UPDATE_SCREENSHOTS = "DFH_UPDATE_SCREENSHOTS"
MAX_LAYOUT_DIFFERENCE = 0.02
"""Share of 16x16 tiles allowed to differ: font hinting may move a glyph, not a table or a chart."""


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def embedded(page_html: str) -> dict[str, Any]:
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page_html, re.S)
    assert blob is not None
    return dict(json.loads(blob.group(1)))


@pytest.fixture
def rules() -> Rules:
    return Rules.compile({"marker": MARKER_RULE, "light": LIGHT_RULE, "hostile": HOSTILE_RULE})


def release(
    scanner: Scanner, name: str, version: str, files: dict[str, bytes], corrupt: bool = False
) -> TargetResult:
    filename, data = sdist(name, version, files)
    dist = scanner.scan_bytes(data[: len(data) // 2] if corrupt else data, filename)
    rules_matched = list(dist.rules_matched)
    verdict = "findings" if rules_matched else "clean" if dist.complete else "incomplete"
    return TargetResult(
        target=f"{name}=={version}",
        kind="release",
        name=name,
        version=version,
        distributions=[dist],
        score=dist.score,
        rules_matched=rules_matched,
        verdict=verdict,
    )


@pytest.fixture
def store(tmp_path: Path, rules: Rules) -> Path:
    """A store with four releases scanned on three days: two with findings, one clean, one incomplete."""
    scanner = Scanner(rules)
    scans = [
        (release(scanner, "evil", "1.0", {"setup.py": b"import os\n# " + MARKER + b"\n"}), "2026-03-01"),
        (release(scanner, "light", "0.1", {"light/a.py": b"x = 1  # " + LIGHT_MARKER + b"\n"}), "2026-03-02"),
        (release(scanner, "good", "1.0", {"a.py": b"pass\n"}), "2026-03-02"),
        (release(scanner, "broken", "2.0", {"a.py": os.urandom(4000)}, corrupt=True), "2026-03-04"),
    ]
    path = tmp_path / "store.db"
    with Store(path) as db:
        for result, day in scans:
            db.record(
                result, rules_hash=rules.hash, rules_count=rules.count, scanned_at=f"{day}T12:00:00+00:00"
            )
    return path


@pytest.fixture
def hostile_archive(tmp_path: Path) -> Path:
    """An sdist whose member path and matched content are markup that would run if pasted unescaped."""
    content = f"print('x')\n{HOSTILE}\n# ".encode() + MARKER + b"\n"
    return write(tmp_path / "hostile-1.0.tar.gz", tar_gz_bytes({f"hostile-1.0/{HOSTILE}.py": content}))


@pytest.fixture
def spoofing_archive(tmp_path: Path) -> Path:
    """An sdist whose member names and matched line hold bidi controls, zero-width characters and CRs."""
    content = SPOOFING_LINE.encode() + MARKER + b"\n"
    members = {f"spoof-1.0/{name}": content for name in SPOOFING_NAMES}
    return write(tmp_path / "spoof-1.0.tar.gz", tar_gz_bytes(members))


def spoofing_page(spoofing_archive: Path, rules: Rules) -> str:
    target = TargetResult.from_distributions(
        str(spoofing_archive), "archive", spoofing_archive.name, [Scanner(rules).scan_path(spoofing_archive)]
    )
    return render_page(page_from_targets([target], rules))


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds a character the page must show as an escape (any but the page's own line
    breaks, a C* or Z* character other than the space)."""
    return any(unicodedata.category(c)[0] in "CZ" and c not in " \n" for c in text)


# ------------------------------------------------------------------------------------ the page, as text


def test_embedded_json_cannot_end_its_script_element() -> None:
    value = {"path": HOSTILE + "<!-- & -->", "n": [1, "ü"]}
    text = embedded_json(value)
    assert not set("<>&") & set(text) and text.isascii()
    assert json.loads(text) == value


def test_escaping_is_html_escape() -> None:
    """The page's escaping (written here so the ``html`` package is not imported) is ``html.escape``'s."""
    chance = random.Random(2026)
    alphabet = "&<>\"'a ;#xü\u2028\U0001f600\\/="
    texts = [HOSTILE, "&amp;", "plain/path.py", "", "'\"", "a&b<c>d\"e'f"]
    texts += ["".join(chance.choice(alphabet) for _ in range(chance.randrange(30))) for _ in range(500)]
    for text in texts:
        assert html_report._e(text) == html.escape(text, quote=True)
    assert html_report._e(12) == "12"


def test_a_page_written_in_parts_is_the_rendered_page(store: Path, rules: Rules) -> None:
    """``write_page`` (what ``scan`` does) writes exactly ``render_page``'s document; the collector is
    paused while a scan's page is made and left as it was found, also when writing fails."""
    scanner = Scanner(rules, threads=2)
    target = release(
        scanner, "many", "1.0", {"pkg/a.py": b"# " + MARKER + b"\n", "pkg/b.py": HOSTILE.encode()}
    )
    with Store(store, readonly=True) as db:
        pages = [page_from_targets([target], rules), page_from_store(db)]
    for page in pages:
        out = io.StringIO()
        html_report.write_page(page, out)
        assert out.getvalue() == render_page(page)

    class Recording(io.StringIO):
        """Records whether the collector ran at each write."""

        def __init__(self) -> None:
            super().__init__()
            self.collector: list[bool] = []

        def write(self, text: str) -> int:
            self.collector.append(gc.isenabled())
            return super().write(text)

    class Failing(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            recording = Recording()
            html_report.write_scan_page([target], rules, recording)
            assert recording.collector and not any(recording.collector)
            assert gc.isenabled() is enabled
            with pytest.raises(OSError, match="disk full"):
                html_report.write_scan_page([target], rules, Failing())
            assert gc.isenabled() is enabled
        finally:
            gc.enable()


def test_scan_format_html(tmp_path: Path, hostile_archive: Path, rules: Rules) -> None:
    rules_file = write(tmp_path / "rules.yar", (MARKER_RULE + HOSTILE_RULE).encode())
    clean = write(tmp_path / "clean.py", b"print('hello')\n")
    out = tmp_path / "report.html"
    result = run("scan", hostile_archive, clean, "-r", rules_file, "-f", "html", "-o", out, "-q")
    assert result.exit_code == 1, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert policy is not None and html.unescape(policy.group(1)).startswith("default-src 'none'; ")
    # Package content appears only escaped: the one <script> end tag per script element is ours.
    assert "<img" not in page and page.count("</script>") == 2
    assert "&lt;/script&gt;&lt;img src=x onerror=window.pwned=1&gt;" in page
    data = embedded(page)
    assert [(r["label"], r["verdict"]) for r in data["releases"]] == [
        (str(hostile_archive), "findings"),
        (str(clean), "clean"),
    ]
    findings = {(f["rule"], f["file"]) for f in data["findings"]}
    assert findings == {
        ("test_marker", f"hostile-1.0.tar.gz/hostile-1.0/{HOSTILE}.py"),
        ("hostile_markup", f"hostile-1.0.tar.gz/hostile-1.0/{HOSTILE}.py"),
    }
    hostile = next(f for f in data["findings"] if f["rule"] == "hostile_markup")
    assert hostile["description"] == "markup that would run if a report pasted it unescaped"
    assert hostile["snippets"][0] | {"offset": 0} == {
        "identifier": "$markup",
        "offset": 0,
        "before": "",
        "matched": HOSTILE,
        "after": "",
        "line": 2,
        "column": 1,
    }
    marker = next(f for f in data["findings"] if f["rule"] == "test_marker")
    assert (marker["snippets"][0]["before"], marker["snippets"][0]["matched"]) == ("# ", MARKER.decode())
    # The file column says file:line; the matched part of the line is marked.
    assert f"{HOSTILE_LABEL_HTML}:3</td>" in page
    assert "<code># <mark>DRAGONFLY_TEST_MARKER</mark></code>" in page
    # Without -o the page goes to stdout.
    stdout = run("scan", clean, "-r", rules_file, "--format", "html", "-q")
    assert stdout.exit_code == 0 and stdout.stdout.startswith("<!DOCTYPE html>")
    assert [r["verdict"] for r in embedded(stdout.stdout)["releases"]] == ["clean"]


def test_scan_format_html_shows_spoofing_characters_as_escapes(
    tmp_path: Path, spoofing_archive: Path, rules: Rules
) -> None:
    """Bidi controls, zero-width characters and CRs in member names and matched lines are shown as the
    table and markdown reports show them, everywhere on the page; the embedded data keeps them as they are."""
    rules_file = write(tmp_path / "rules.yar", MARKER_RULE.encode())
    out = tmp_path / "report.html"
    result = run("scan", spoofing_archive, "-r", rules_file, "-f", "html", "-o", out, "-q")
    assert result.exit_code == 1, result.output
    page = out.read_text(encoding="utf-8")
    assert not has_invisible(page)  # the embedded JSON is ASCII: this is the markup
    for name, shown in SPOOFING_NAMES.items():
        assert f'<td class="path">spoof-1.0.tar.gz/spoof-1.0/{shown}:1</td>' in page, name
        assert f'<td class="path">spoof-1.0.tar.gz/spoof-1.0/{shown}{html.escape(READING)}:2</td>' in page
    assert f"<code>{html.escape(SPOOFING_LINE_SHOWN)}<mark>DRAGONFLY_TEST_MARKER</mark></code>" in page
    assert '<td class="path">spoof-1.0.tar.gz/spoof-1.0/aaaa\\rZZ.py</td>' in page  # its issue
    data = embedded(page)
    assert {f["file"] for f in data["findings"]} == {
        f"spoof-1.0.tar.gz/spoof-1.0/{n}{reading}" for n in SPOOFING_NAMES for reading in ("", READING)
    }
    assert {f["snippets"][0]["before"] for f in data["findings"]} == {SPOOFING_LINE, SPOOFING_READ_LINE}


def test_report_html_from_store(tmp_path: Path, store: Path) -> None:
    out = tmp_path / "store.html"
    result = run("report", "--store", store, "--all", "--html", out)
    assert result.exit_code == 0, result.output
    data = embedded(out.read_text(encoding="utf-8"))
    assert [(r["label"], r["verdict"]) for r in data["releases"]] == [
        ("broken==2.0", "incomplete"),
        ("good==1.0", "clean"),  # same time as light==0.1, stored after it
        ("light==0.1", "findings"),
        ("evil==1.0", "findings"),
    ]
    assert data["days"] == [
        {"day": "2026-03-01", "scans": 1, "findings": 1},
        {"day": "2026-03-02", "scans": 2, "findings": 1},
        {"day": "2026-03-03", "scans": 0, "findings": 0},  # filled in: the chart is a time line
        {"day": "2026-03-04", "scans": 1, "findings": 0},
    ]
    assert {c["rule"]: c["releases"] for c in data["rule_counts"]} == {"test_marker": 1, "light_marker": 1}
    light = next(f for f in data["findings"] if f["rule"] == "light_marker")
    assert light["file"] == "light-0.1.tar.gz/light-0.1/light/a.py"
    snippet = light["snippets"][0]
    assert (snippet["before"], snippet["matched"], snippet["after"]) == (
        "x = 1  # ",
        LIGHT_MARKER.decode(),
        "",
    )
    assert (snippet["line"], snippet["column"]) == (1, 10)
    assert light["description"] == "a light marker"
    assert [(i["release"], i["file"], i["kind"]) for i in data["issues"]] == [
        ("broken==2.0", "broken-2.0.tar.gz/broken-2.0/a.py", "corrupt"),
        ("broken==2.0", "broken-2.0.tar.gz", "corrupt"),
    ]
    # Without --all, only scans with findings; --since bounds scans and days alike.
    data = embedded(run_html(tmp_path, "--store", store, "--since", "2026-03-02"))
    assert [r["label"] for r in data["releases"]] == ["light==0.1"]
    assert [d["day"] for d in data["days"]] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    one = embedded(run_html(tmp_path, "evil==1.0", "--store", store))
    assert [r["label"] for r in one["releases"]] == ["evil==1.0"] and one["days"] == []


def run_html(tmp_path: Path, *args: object) -> str:
    out = tmp_path / "page.html"
    result = run("report", *args, "--html", out)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def test_report_html_errors(tmp_path: Path, store: Path) -> None:
    missing = run("report", "nothere==1.0", "--store", store, "--html", tmp_path / "x.html")
    assert missing.exit_code == 2 and "nothere==1.0 is not in the store" in missing.stderr
    unwritable = run("report", "--store", store, "--html", tmp_path / "no" / "such" / "dir.html")
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.stderr


# -------------------------------------------------------------------------------- the page, in a browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = pytest.importorskip("tests.browser", reason="websocket-client (the test extra) is not installed")
    executable = driver.find_chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (scripts/test.sh installs Debian's when it runs as root)")
    instance = driver.Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield instance
    instance.close()


def visible_rows(browser: Any, section: str) -> int:
    return int(
        browser.evaluate(
            f"[...document.querySelectorAll('#{section} tbody tr')]"
            ".filter(r => r.getClientRects().length).length"
        )
    )


def open_page(browser: Any, path: Path, **options: Any) -> None:
    browser.open(path.as_uri(), **options)
    assert browser.requests() == [path.as_uri()], "the page requested something besides itself"


def store_page(tmp_path: Path, store: Path) -> Path:
    with Store(store, readonly=True) as db:
        page = page_from_store(db, findings_only=False)
    path = tmp_path / "store.html"
    path.write_text(render_page(page), encoding="utf-8")
    return path


def test_page_renders_verdicts_findings_and_charts(browser: Any, tmp_path: Path, store: Path) -> None:
    open_page(browser, store_page(tmp_path, store))
    assert browser.evaluate("window.cspViolations") == []
    verdicts = browser.evaluate(
        "[...document.querySelectorAll('#releases tbody .verdict')].map(e => e.textContent)"
    )
    assert verdicts == ["incomplete", "clean", "findings", "findings"]
    assert visible_rows(browser, "findings") == 2
    assert (
        browser.evaluate("document.querySelector('#findings mark').textContent") == "DRAGONFLY_LIGHT_MARKER"
    )
    # Each chart drew one shape per rule / two per day, each with a real size on the screen.
    bars = """[...document.querySelectorAll('#chart-%s rect:not(.legend)')].map(r => {
        const box = r.getBoundingClientRect(); return [box.width, box.height]; })"""
    rule_bars = browser.evaluate(bars % "rules")
    assert len(rule_bars) == 2 and all(w > 1 and h > 1 for w, h in rule_bars)
    day_bars = browser.evaluate(bars % "days")
    # Scans, then findings, per day from the first to the last: 2026-03-03 had none, 03-04 no finding.
    assert len(day_bars) == 8 and all(w > 1 for w, _ in day_bars)
    assert [h > 0 for _, h in day_bars] == [True, True, True, True, False, False, True, False]
    assert browser.evaluate("document.getElementById('filters').hidden") is False


def test_search_and_filters_hide_rows(browser: Any, tmp_path: Path, store: Path) -> None:
    open_page(browser, store_page(tmp_path, store))
    assert (visible_rows(browser, "releases"), visible_rows(browser, "findings")) == (4, 2)
    browser.type_text("#search", "light")
    assert (visible_rows(browser, "releases"), visible_rows(browser, "findings")) == (1, 1)
    assert browser.evaluate("document.querySelector('#findings .count').textContent") == "1 of 2"
    browser.type_text("#search", "-nothing-matches-this")
    assert visible_rows(browser, "findings") == 0
    assert browser.evaluate("document.querySelector('#findings .none-shown').hidden") is False

    def choose(select: str, value: str) -> None:
        browser.evaluate(
            f"{{ const s = document.getElementById('{select}'); s.value = '{value}';"
            "s.dispatchEvent(new Event('input')); }"
        )

    browser.evaluate("document.getElementById('search').value = ''")
    choose("verdict-filter", "clean")
    assert (visible_rows(browser, "releases"), visible_rows(browser, "findings")) == (1, 0)
    choose("verdict-filter", "")
    choose("rule-filter", "test_marker")
    assert (visible_rows(browser, "releases"), visible_rows(browser, "findings")) == (1, 1)
    assert browser.evaluate("document.querySelector('#releases tbody tr:not([hidden]) td').textContent") == (
        "evil==1.0"
    )
    assert visible_rows(browser, "rules") == 1


def test_hostile_package_content_is_inert_text(
    browser: Any, tmp_path: Path, hostile_archive: Path, rules: Rules
) -> None:
    target = TargetResult.from_distributions(
        str(hostile_archive), "archive", hostile_archive.name, [Scanner(rules).scan_path(hostile_archive)]
    )
    path = tmp_path / "hostile.html"
    path.write_text(render_page(page_from_targets([target], rules)), encoding="utf-8")
    open_page(browser, path)
    assert browser.evaluate("window.pwned") is None
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert browser.evaluate("window.cspViolations") == []  # nothing even tried to run or load
    cells = browser.evaluate("[...document.querySelectorAll('#findings td.path')].map(c => c.textContent)")
    assert f"hostile-1.0.tar.gz/hostile-1.0/{HOSTILE}.py:2" in cells
    marks = browser.evaluate("[...document.querySelectorAll('#findings mark')].map(m => m.textContent)")
    assert HOSTILE in marks
    # One release: the per-file tables leave out their "Release" column (the releases table keeps it).
    assert browser.evaluate("document.querySelector('#findings th.release').getClientRects().length") == 0
    assert browser.evaluate("document.querySelector('#releases th.release').getClientRects().length") == 1
    # The charts' labels come from the same data: drawn as text too.
    assert browser.evaluate("document.querySelectorAll('#chart-rules text').length") > 0


def test_spoofing_characters_are_shown_as_escapes(
    browser: Any, tmp_path: Path, spoofing_archive: Path, rules: Rules
) -> None:
    """What the browser shows of hostile names, lines and rule labels (tables and charts alike) is the
    escaped form; the rule filter still finds its rows."""
    page = spoofing_page(spoofing_archive, rules)
    path = tmp_path / "spoof.html"
    path.write_text(page, encoding="utf-8")
    open_page(browser, path)
    cells = browser.evaluate("[...document.querySelectorAll('#findings td.path')].map(c => c.textContent)")
    assert sorted(cells) == sorted(
        f"spoof-1.0.tar.gz/spoof-1.0/{shown}{where}"
        for shown in SPOOFING_NAMES.values()
        for where in (":1", f"{READING}:2")
    )
    codes = browser.evaluate("[...document.querySelectorAll('#findings code')].map(c => c.textContent)")
    lines = [SPOOFING_LINE_SHOWN + MARKER.decode(), SPOOFING_READ_LINE_SHOWN + MARKER.decode()]
    assert sorted(codes) == sorted(lines * len(SPOOFING_NAMES))
    shown = "document.title + ['header', 'main'].map(s => document.querySelector(s).textContent).join('')"
    assert not has_invisible(browser.evaluate(shown))
    # The charts are drawn by the script from the embedded data: a rule or a day from a store may be hostile.
    hostile = Page(
        title="se\u200btup==1.0",
        generated_at="2026-03-05T00:00:00+00:00",
        rules_hash=None,
        rules_count=None,
        findings=[FindingRow("r", "findings", "a.py", "rule\u202eevil", 5, None, [], 0)],
        rule_counts=[RuleCount("rule\u202eevil", 5, 1, 1)],
        days=[DayCount("2026-03-01\r", 1, 1)],
    )
    path.write_text(render_page(hostile), encoding="utf-8")
    open_page(browser, path)
    assert browser.evaluate("window.cspViolations") == []
    drawn = browser.evaluate("[...document.querySelectorAll('svg text, svg title')].map(t => t.textContent)")
    assert "rule\\u202eevil" in drawn and "2026-03-01\\r" in drawn
    assert "rule\\u202eevil: 1 release(s), 1 file(s), weight 5" in drawn
    assert not any(has_invisible(text) for text in drawn)
    assert browser.evaluate("document.title") == "se\\u200btup==1.0"
    browser.evaluate(
        "{ const s = document.getElementById('rule-filter'); s.value = s.options[1].value;"
        "s.dispatchEvent(new Event('input')); }"
    )
    assert visible_rows(browser, "findings") == 1


def test_tables_read_without_javascript(browser: Any, tmp_path: Path, store: Path) -> None:
    open_page(browser, store_page(tmp_path, store), javascript=False)  # the next open() enables it again
    assert (visible_rows(browser, "releases"), visible_rows(browser, "findings")) == (4, 2)
    # Controls that would do nothing, and empty charts, stay hidden.
    assert browser.evaluate("document.getElementById('filters').getClientRects().length") == 0
    assert browser.evaluate("document.getElementById('charts').getClientRects().length") == 0
    assert browser.evaluate("document.querySelectorAll('#chart-rules rect').length") == 0


def fixed_page(store: Path) -> Page:
    """The store page, without what changes from run to run (time, version)."""
    with Store(store, readonly=True) as db:
        page = page_from_store(db, findings_only=False)
    page.generated_at = "2026-03-05T00:00:00+00:00"
    page.tool = "dragonfly-hybrid"
    return page


def test_layout_matches_reference_screenshot(browser: Any, tmp_path: Path, store: Path) -> None:
    from tests.browser import decode_png, layout_difference

    path = tmp_path / "layout.html"
    path.write_text(render_page(fixed_page(store)), encoding="utf-8")
    open_page(browser, path, width=1000, height=760)
    screenshot = browser.screenshot()
    if os.environ.get(UPDATE_SCREENSHOTS):
        REFERENCE_SCREENSHOT.write_bytes(screenshot)
        pytest.skip(f"{UPDATE_SCREENSHOTS} is set: wrote {REFERENCE_SCREENSHOT}")
    difference = layout_difference(decode_png(screenshot), decode_png(REFERENCE_SCREENSHOT.read_bytes()))
    if difference > MAX_LAYOUT_DIFFERENCE:
        (tmp_path / "actual.png").write_bytes(screenshot)
    assert difference <= MAX_LAYOUT_DIFFERENCE, (
        f"{difference:.1%} of the page differs from {REFERENCE_SCREENSHOT.name} (this run's screenshot: "
        f"{tmp_path / 'actual.png'}; regenerate with {UPDATE_SCREENSHOTS}=1 if the change is intended)"
    )


def test_every_day_fills_gaps_up_to_a_year() -> None:
    days = [DayCount("2026-02-27", 1, 0), DayCount("2026-03-02", 2, 1)]
    assert [(d.day, d.scans) for d in every_day(days)] == [
        ("2026-02-27", 1),
        ("2026-02-28", 0),
        ("2026-03-01", 0),
        ("2026-03-02", 2),
    ]
    far = [DayCount("2024-01-01", 1, 0), DayCount("2026-01-01", 1, 1)]
    assert every_day(far) == far
    assert every_day([]) == []


def test_binary_file_shows_the_matched_bytes_without_a_line(tmp_path: Path, rules: Rules) -> None:
    binary = write(tmp_path / "blob.bin", b"\x00\x01\nzz" + MARKER + b"\xff\n")
    target = TargetResult.from_distributions(
        str(binary), "file", binary.name, [Scanner(rules).scan_path(binary)]
    )
    (finding,) = page_from_targets([target], rules).findings
    (snippet,) = finding.snippets
    assert (snippet.before, snippet.matched, snippet.after) == ("", MARKER.decode(), "")
    assert (snippet.line, snippet.offset) == (None, 5)
    assert f'<td class="path">{binary.name}</td>' in render_page(page_from_targets([target], rules))


def test_snippet_from_an_older_store_row_and_clipping() -> None:
    assert make_snippet("$a", 7, "matched") == Snippet("$a", 7, "", "matched", "")
    long = make_snippet("$a", 0, "m", ["b" * 500, "m", "a" * 500], 3, 501)
    assert long.matched == "m" and long.before.startswith("…") and long.after.endswith("…")
    assert len(long.before) + len(long.after) <= SNIPPET_CHARS + 2
    # A match longer than a snippet leaves no room around it: the line's other parts are only marked.
    wide = make_snippet("$a", 0, "", ["before ", "\\x00" * 100, " after"], 1, 8)
    assert (wide.before, wide.matched, wide.after) == ("…", "\\x00" * 40 + "…", "…")


def test_a_scan_with_more_findings_than_a_page_lists_the_heaviest(
    rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_FINDINGS the page lists the heaviest (and says how many there are); hits per rule still
    count every finding."""
    scanner = Scanner(rules, threads=2)
    files = {f"pkg/m{i}.py": b"# " + LIGHT_MARKER + b"\n" for i in range(6)}
    files["pkg/evil.py"] = b"# " + MARKER + b"\n"
    target = release(scanner, "many", "1.0", files)
    assert target.distributions[0].match_count == 7
    complete = page_from_targets([target], rules)
    assert complete.findings_total is None and len(complete.findings) == 7

    monkeypatch.setattr(html_report, "MAX_FINDINGS", 3)
    page = page_from_targets([target], rules)
    assert page.findings_total == 7 and len(page.findings) == 3
    assert page.findings[0].rule == "test_marker"  # the heaviest first
    assert page.rule_counts == complete.rule_counts
    counts = {c.rule: (c.releases, c.files) for c in page.rule_counts}
    assert counts == {"light_marker": (1, 6), "test_marker": (1, 1)}
    summary = re.sub(r"<[^>]+>", "", render_page(page))
    assert "7 finding(s), the 3 heaviest listed (--format json has them all)" in summary


def test_the_embedded_data_is_the_page_as_asdict_gives_it(tmp_path: Path, store: Path, rules: Rules) -> None:
    """The page's JSON is read from its models' fields: the same values, keys and order as
    ``dataclasses.asdict``, for a scan page and a store page."""
    scanner = Scanner(rules, threads=2)
    target = release(
        scanner, "many", "1.0", {"pkg/a.py": b"# " + MARKER + b"\n", "pkg/b.bin": b"\0" + MARKER}
    )
    with Store(store, readonly=True) as db:
        pages = [page_from_targets([target], rules), page_from_store(db)]
    for page in pages:
        assert page.findings and page.releases
        data = embedded(render_page(page))
        assert data == asdict(page)
        assert json.dumps(data) == json.dumps(asdict(page))  # the keys in the same order
