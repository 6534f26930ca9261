"""Rule sets for the benchmarks, as ``origin -> YARA source`` mappings.

* ``light``: the bundled rules (``python/dragonfly_hybrid/rules/*.yar``) plus the few marker rules below; if
  no bundled ``.yar`` exists yet, ~20 generated light rules stand in (``ruleset_note`` says so).
* ``heavy``: ~2,000 deterministic generated rules (literals, hex with jumps, bounded regexes, ``nocase`` /
  ``wide`` / ``fullword``, ``filetype`` metadata, weights) that mostly do not match the corpus, plus the
  marker rules, so that YARA-X dominates the cost. A handful of "noisy" rules do match common code.
* ``common``: ``light`` plus the "noisy" rules of ``heavy`` (``import subprocess``, ``import pickle``, more
  than three ``open(``...), which match common code: many findings, so the reports are large (the
  end-to-end benchmark, ``bench/test_bench_e2e.py``).
* ``never`` (``never_sources``): one rule that can apply to no file, for the inflate-only limit.

The marker rules match the snippets ``bench/synthetic.py`` plants in a few releases, so both scan paths
produce findings (and exercise ``filetype``, weight 0 and a non-integer weight). Everything uses the core
YARA-X language only (no modules), so it compiles with the yara-x Python package and the Rust engine.
"""

from __future__ import annotations

import importlib.util
import random
import re
from functools import cache
from pathlib import Path

HEAVY_RULES = 2_000
HEAVY_SEED = 1_337
RULES_PER_FILE = 200

MARKER_RULES = r"""
rule DFH_BENCH_exec_b64 {
    meta:
        description = "exec of a base64 payload"
        weight = 5
        filetype = ".py"
    strings:
        $a = "exec(base64.b64decode("
    condition:
        $a
}

rule DFH_BENCH_curl_sh {
    meta:
        weight = 4
        filetype = ".py .sh"
    strings:
        $r = /curl -s https?:\/\/[a-z0-9.\-]{3,64}\/[a-z0-9_.\/]{1,64} \| (ba)?sh/
    condition:
        $r
}

rule DFH_BENCH_webhook {
    meta:
        weight = 3
        filetype = ".py .txt .cfg"
    strings:
        $a = "discord.com/api/webhooks/"
    condition:
        $a
}

rule DFH_BENCH_elf_mark {
    meta:
        weight = 2
        filetype = ".so .pyd"
    strings:
        $h = { 44 46 48 5F 4D 41 52 4B [4-32] 13 37 C0 DE }
    condition:
        uint32(0) == 0x464C457F and $h
}

rule DFH_BENCH_b64decode_anywhere {
    meta:
        weight = 0
        filetype = ".py .txt"
    strings:
        $a = "b64decode("
    condition:
        $a
}

rule DFH_BENCH_string_weight {
    meta:
        weight = "7"
        filetype = ".py"
    strings:
        $a = "| sh\")"
    condition:
        $a
}
"""


def _render(name: str, weight: int, filetype: str | None, strings: list[str], condition: str) -> str:
    meta = f"weight = {weight}" + (f' filetype = "{filetype}"' if filetype else "")
    body = f" strings: {' '.join(strings)}" if strings else ""
    return f"rule {name} {{ meta: {meta}{body} condition: {condition} }}\n"


_FALLBACK_LIGHT = [
    ("light_exec_compile", 3, ".py", [r'$a = "exec(compile("'], "$a"),
    ("light_eval_decode", 3, ".py", [r"$a = /eval\([a-z0-9_.]{1,32}\.decode\(/"], "$a"),
    (
        "light_dunder_import_os",
        2,
        ".py",
        [r"""$a = "__import__('os').system(" """, r'$b = "__import__(\"os\").system("'],
        "any of them",
    ),
    ("light_marshal_loads", 2, ".py", [r'$a = "marshal.loads("'], "$a"),
    ("light_zlib_exec", 3, ".py", [r'$a = "exec(zlib.decompress("'], "$a"),
    (
        "light_powershell",
        3,
        None,
        [r'$a = "powershell -enc" nocase', r'$b = "powershell.exe -e" nocase'],
        "any of them",
    ),
    ("light_telegram_api", 3, None, [r'$a = "api.telegram.org/bot"'], "$a"),
    ("light_pastebin_raw", 2, None, [r'$a = "pastebin.com/raw/"'], "$a"),
    ("light_ngrok", 2, None, [r'$a = ".ngrok.io"', r'$b = ".ngrok-free.app"'], "any of them"),
    ("light_wget_pipe", 3, None, [r"$a = /wget -q?O- https?:\/\/[^ ]{4,80} \| (ba)?sh/"], "$a"),
    ("light_pth_exec", 4, ".pth", [r'$a = "import "', r'$b = "exec("'], "$a and $b"),
    (
        "light_browser_cookies",
        3,
        None,
        [r'$a = "Login Data"', r'$b = "Local State"', r'$c = "Cookies"'],
        "2 of them",
    ),
    (
        "light_crypto_wallet",
        2,
        None,
        [r'$a = "wallet.dat"', r'$b = "Exodus"', r'$c = "Electrum"'],
        "2 of them",
    ),
    (
        "light_token_grab",
        3,
        None,
        [r'$a = "discordapp.com/api"', r'$b = "Local Storage\\leveldb"'],
        "any of them",
    ),
    ("light_reverse_shell", 4, ".py", [r'$a = "pty.spawn("', r'$b = "socket.socket("'], "all of them"),
    ("light_setup_cmdclass", 1, "setup.py", [r'$a = "cmdclass"', r'$b = "urlopen("'], "all of them"),
    ("light_hex_pe_in_py", 2, ".py", [r'$a = "4d5a90000300000004000000ffff" nocase'], "$a"),
    ("light_getattr_builtins", 1, ".py", [r"""$a = /getattr\(__builtins__, ?["'](exec|eval)["']\)/"""], "$a"),
    ("light_mz_in_text", 1, ".py .txt .json", [], "uint16(0) == 0x5A4D"),
    ("light_keylogger", 2, ".py", [r'$a = "pynput.keyboard"', r'$b = "on_press"'], "all of them"),
]
FALLBACK_LIGHT_RULES = "".join(_render(*r) for r in _FALLBACK_LIGHT)

# Strings that occur in ordinary Python (the synthetic corpus has some): rules combine them with a rare one
# so that YARA-X finds and verifies many atoms but the rules do not match.
_COMMON = (
    "import os",
    "import sys",
    "subprocess",
    "base64",
    "socket",
    "getattr(",
    "__import__",
    "eval(",
    "exec(",
    "os.system",
    "urllib",
    "requests.",
    "open(",
    "json.loads",
    "zlib",
    "marshal",
    "pickle",
    "ctypes",
    "platform",
    "getenv",
    "environ",
    "tempfile",
    "shutil",
    ".decode(",
    ".encode(",
    "logger.",
    "raise ",
    "except ",
    "lambda",
    "http",
    "hashlib",
    "threading",
)
# Regex prefixes that hit ordinary Python often; a rare suffix keeps the rules from matching.
_ANCHORS = (
    r"import\s+(os|sys|subprocess|socket)[^\n]{0,200}",
    r"(eval|exec)\s{0,3}\([^)]{0,300}",
    r"self\.[a-z_]{1,30}\s{0,2}=\s{0,2}[^\n]{0,100}",
    r"def [a-z_]{1,40}\([^)]{0,200}\)[^\n]{0,40}",
    r"logger\.(debug|info|warning)\([^\n]{0,200}",
    r"(open|read)\([^\n]{0,120}",
    r"return [^\n]{0,80}",
    r"except [A-Za-z(), ]{1,60} as [a-z]{1,10}:[^\n]{0,40}",
)
_FILETYPES = (".py", ".py .pyi", ".so .pyd", ".js", ".sh .bat .ps1", ".json", ".txt .md", ".pth", "setup.py")


def bundled_rules_dir() -> Path:
    """``dragonfly_hybrid.rules_loader.bundled_rules_dir()``, found without importing the extension."""
    spec = importlib.util.find_spec("dragonfly_hybrid")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "rules"
    return Path(__file__).resolve().parents[1] / "python" / "dragonfly_hybrid" / "rules"


def _shown(directory: Path) -> str:
    """``directory`` relative to the repository when it is inside it (shorter, and the same on every
    machine), else as it is."""
    try:
        return directory.resolve().relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        return str(directory)


def _rare(rng: random.Random, lo: int = 7, hi: int = 14) -> str:
    consonants = "bcdfghjklmnpqrstvwxz"
    vowels = "aeiouy"
    out = []
    for i in range(rng.randint(lo, hi)):
        out.append(rng.choice(consonants if i % 2 == 0 else vowels))
    if rng.random() < 0.5:
        out.insert(rng.randint(1, len(out) - 1), str(rng.randint(0, 99)))
    if rng.random() < 0.3:
        out.insert(rng.randint(1, len(out) - 1), "_")
    return "".join(out)


def _hex(rng: random.Random, n: int) -> str:
    return " ".join(f"{rng.randrange(256):02X}" for _ in range(n))


def _hex_pattern(rng: random.Random) -> str:
    parts = [_hex(rng, rng.randint(4, 6))]
    for _ in range(rng.randint(1, 3)):
        k = rng.random()
        if k < 0.4:
            lo = rng.randint(0, 8)
            parts.append(f"[{lo}-{lo + rng.randint(1, 24)}]")
        elif k < 0.7:
            parts.append(" ".join("??" for _ in range(rng.randint(1, 4))))
        else:
            parts.append(f"( {_hex(rng, 2)} | {_hex(rng, 2)} )")
        parts.append(_hex(rng, rng.randint(3, 6)))
    return "{ " + " ".join(parts) + " }"


def _text_string(rng: random.Random) -> str:
    k = rng.random()
    if k < 0.35:
        s = _rare(rng)
    elif k < 0.55:
        s = f"{rng.choice(('def ', 'import ', 'from ', 'class ', 'self.', 'os.'))}{_rare(rng, 5, 10)}"
    elif k < 0.7:
        s = f"{_rare(rng, 5, 9)}("
    elif k < 0.85:
        s = f"{_rare(rng, 4, 8)}.{_rare(rng, 4, 8)}"
    else:
        tld = rng.choice(("com", "net", "io", "ru", "xyz"))
        s = f"{rng.choice(('http://', 'https://'))}{_rare(rng, 5, 10)}.{tld}/"
    mods = []
    m = rng.random()
    if m < 0.15:
        mods.append("nocase")
    elif m < 0.25:
        mods.append("ascii wide")
    elif m < 0.3:
        mods.append("fullword")
    return '"' + s + '"' + ("" if not mods else " " + " ".join(mods))


def _regex(rng: random.Random) -> str:
    k = rng.random()
    a, b = _rare(rng, 4, 7), _rare(rng, 4, 7)
    if k < 0.25:
        return rf"/{a}[a-z0-9_]{{2,16}}\(/"
    if k < 0.5:
        return rf"/({a}|{b})\s{{0,4}}=\s{{0,4}}[\"'][A-Za-z0-9+\/]{{16,64}}/"
    if k < 0.7:
        return rf"/https?:\/\/[a-z0-9.\-]{{1,40}}\.{a}\//"
    if k < 0.85:
        return rf"/import\s+{a}[a-z_]{{0,12}}/"
    return rf"/{a}\.{b}\([^)]{{0,32}}\)/"


def _rule(rng: random.Random, name: str) -> str:
    meta = [f"weight = {rng.choice((1, 1, 2, 2, 3, 4, 5, 6, 8, 10))}"]
    if rng.random() < 0.3:
        meta.append(f'filetype = "{rng.choice(_FILETYPES)}"')
    if rng.random() < 0.5:
        meta.append(f'description = "generated {_rare(rng, 4, 8)} detector"')
    strings: list[str] = []
    family = rng.random()
    if family < 0.3:  # literals
        for i in range(rng.randint(2, 5)):
            strings.append(f"$s{i} = {_text_string(rng)}")
        condition = rng.choice(("any of them", "2 of them", "all of them", "any of them and filesize < 5MB"))
    elif family < 0.43:  # hex with jumps
        for i in range(rng.randint(1, 3)):
            strings.append(f"$h{i} = {_hex_pattern(rng)}")
        head = rng.choice(("", "", "uint16(0) == 0x5A4D and ", "uint32(0) == 0x464C457F and "))
        condition = head + rng.choice(("any of them", "all of them"))
    elif family < 0.53:  # bounded regexes around rare words
        for i in range(rng.randint(1, 2)):
            strings.append(f"$r{i} = {_regex(rng)}{' nocase' if rng.random() < 0.2 else ''}")
        condition = "any of them"
    elif family < 0.78:  # bounded regexes anchored on common code: many verifications, no match
        strings.append(f"$r = /{rng.choice(_ANCHORS)}{_rare(rng, 4, 7)}/")
        condition = "$r"
    elif family < 0.93:  # common atoms + a rare anchor: lots of atom hits, (almost) never a match
        commons = rng.sample(_COMMON, rng.randint(1, 3))
        for i, c in enumerate(commons):
            strings.append(f'$c{i} = "{c}"')
        strings.append(f"$x = {_text_string(rng)}")
        condition = rng.choice(("all of them", "$x and any of ($c*)", "#c0 > 2 and $x and all of ($c*)"))
    else:  # odd conditions
        strings.append(f'$a = "{_rare(rng)}"')
        strings.append(f"$b = {_text_string(rng)}")
        condition = rng.choice(
            ("$a at 0 or $b at 0", "$a and not $b", "$a in (0..1024) or $b in (0..64)", "#a > 3 or #b > 3")
        )
    body = "\n        ".join(strings)
    metas = "\n        ".join(meta)
    return (
        f"rule {name} {{\n    meta:\n        {metas}\n    strings:\n        {body}\n"
        f"    condition:\n        {condition}\n}}\n"
    )


# Rules that do match ordinary code (real sets have such noise): small weights, many distributions score.
NOISY_RULES = "".join(
    _render(*r)
    for r in [
        ("bench_noisy_pickle_import", 1, ".py", [r'$a = "import pickle"'], "$a"),
        ("bench_noisy_subprocess_import", 1, ".py", [r'$a = "import subprocess"'], "$a"),
        (
            "bench_noisy_socket_and_b64",
            2,
            ".py",
            [r'$a = "import socket"', r'$b = "import base64"'],
            "all of them",
        ),
        ("bench_noisy_elf", 0, ".so", [], "uint32(0) == 0x464C457F"),
        ("bench_noisy_many_opens", 1, None, [r'$a = "open("'], "#a > 3"),
    ]
)


def _rule_count(source: str) -> int:
    return len(re.findall(r"^rule ", source, flags=re.MULTILINE))


@cache
def heavy_sources(count: int = HEAVY_RULES, seed: int = HEAVY_SEED) -> dict[str, str]:
    rng = random.Random(seed)
    generated = count - _rule_count(NOISY_RULES) - _rule_count(MARKER_RULES)
    rules = [_rule(rng, f"bench_heavy_{i:04d}") for i in range(generated)]
    sources = {
        f"heavy/part-{n // RULES_PER_FILE:02d}.yar": "\n".join(rules[n : n + RULES_PER_FILE])
        for n in range(0, len(rules), RULES_PER_FILE)
    }
    sources["heavy/noisy.yar"] = NOISY_RULES
    sources["bench/markers.yar"] = MARKER_RULES
    return sources


def light_sources() -> tuple[dict[str, str], str]:
    """(sources, note): the bundled rules plus the markers, or the fallback set when none is bundled yet."""
    directory = bundled_rules_dir()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".yar", ".yara"))
    if files:
        sources = {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in files}
        note = f"bundled rules ({len(files)} files from {_shown(directory)}) + bench markers"
    else:
        sources = {"fallback/light.yar": FALLBACK_LIGHT_RULES}
        note = f"NO bundled .yar under {directory}: using 20 fallback light rules + bench markers"
    sources["bench/markers.yar"] = MARKER_RULES
    return sources, note


NEVER_SUFFIX = ".dfh-bench-no-such-suffix"
NEVER_RULES = f"""
rule dfh_bench_never {{
    meta:
        filetype = "{NEVER_SUFFIX}"
    condition:
        false
}}
"""


def never_sources() -> dict[str, str]:
    """One rule whose ``filetype`` no file has: the engine then runs neither YARA-X nor a hash on any
    file (the walker's ``scan_named`` / ``RuleSet::may_apply``), so scanning with it times inflating and
    walking alone (the ``limit-inflate`` variant)."""
    return {"bench/never.yar": NEVER_RULES}


def get(name: str) -> tuple[dict[str, str], str]:
    """``light``, ``heavy`` or ``common`` -> (sources, note)."""
    if name == "light":
        return light_sources()
    if name == "heavy":
        sources = heavy_sources()
        return dict(sources), f"{HEAVY_RULES} rules: generated (seed {HEAVY_SEED}) + noisy + bench markers"
    if name == "common":
        sources, note = light_sources()
        return {**sources, "heavy/noisy.yar": NOISY_RULES}, f"{note} + {_rule_count(NOISY_RULES)} noisy rules"
    raise KeyError(name)


def small_sources() -> dict[str, str]:
    """A small set for fast agreement tests: the markers, the noisy rules and 50 generated rules."""
    sources = {"bench/markers.yar": MARKER_RULES, "heavy/noisy.yar": NOISY_RULES}
    rng = random.Random(HEAVY_SEED + 1)
    sources["small/generated.yar"] = "\n".join(_rule(rng, f"bench_small_{i:03d}") for i in range(50))
    return sources
