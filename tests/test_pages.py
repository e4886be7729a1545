"""Every HTML page `summarize` writes (scores.html, scores_viz.html; and the opt-in scores_inspect_viz.html), opened OFFLINE in a real browser (headless Chromium, Debian package
`chromium`): the charts draw (the screenshot holds the bar colours, not a blank page), no script or
resource error reaches the console, and no chart label sticks out of its SVG (the first x label of
scores.html used to be clipped); scores_viz.html shows a bar's value on hover. The opt-in inspect-viz page
needs its CDN: the same probe sees it fail offline, which shows the probe catches a blank page. Skipped when chromium is absent, unless CI is set (then it fails)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cruijff_kit.cli import main as cli_main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "summarize"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip("headless Chromium is not installed (apt-get install chromium); CI is not set",
                allow_module_level=True)

# Prepended to a copy of each page: records script errors, failed resources and console.error calls, and
# once the page has loaded writes them, plus any SVG text outside its SVG, into the document title.
PROBE = """<script>
window.__ck = [];
window.addEventListener("error", e => window.__ck.push("error: " + (e.message || (e.target && (e.target.src ||
  e.target.href)) || "resource")), true);
window.addEventListener("unhandledrejection", e => window.__ck.push("rejection: " + e.reason));
const __err = console.error; console.error = (...a) => { window.__ck.push("console: " + a.join(" ")); __err(...a); };
window.addEventListener("load", () => setTimeout(() => {
  for (const svg of document.querySelectorAll("svg")) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll("text")) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        window.__ck.push("clipped: " + t.textContent);
    }
  }
  const bar = document.querySelector("rect.bar"), tip = document.getElementById("tip");
  if (bar && tip) {
    bar.dispatchEvent(new MouseEvent("mousemove", {clientX: 20, clientY: 20, bubbles: true}));
    if (tip.style.display !== "block" || !/ = [0-9]/.test(tip.textContent)) window.__ck.push("no value on hover");
  }
  document.title = "CK-PROBE[" + window.__ck.join(" | ") + "]";
}, 500));
</script>"""
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *OFFLINE, *args], capture_output=True, text=True, timeout=120)


def summarize(exp: Path, *flags: str) -> list[Path]:
    root = exp.parent
    (root / "s.md").write_text("# settings\n")
    env = {"CK_SCRATCH": str(root), "CK_SETTINGS": str(root / "s.md")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert cli_main(["summarize", str(exp), "--quiet", *flags]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return sorted((exp / "analysis").glob("*.html"))


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[Path]:
    exp = tmp_path_factory.mktemp("pages") / "exp"
    shutil.copytree(FIXTURES / "experiment", exp)
    found = summarize(exp)
    assert [p.name for p in found] == ["scores.html", "scores_viz.html"]  # every page summarize writes by default
    return found


def probe(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(what the probe recorded, console lines) for the page opened offline."""
    copy = tmp_path / page.name
    copy.write_text(re.sub(r"(<head[^>]*>)", r"\1" + PROBE.replace("\\", "\\\\"), page.read_text(), count=1))
    dom = chromium("--dump-dom", copy.as_uri())
    title = re.search(r"<title>CK-PROBE\[(.*?)\]</title>", dom.stdout, re.S)
    assert title, f"{page.name}: the page did not finish loading\n{dom.stderr[-2000:]}"
    return title.group(1), [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]


def bar_pixels(page: Path, tmp_path: Path) -> tuple[int, int]:
    """(number of colours, pixels of the first bar colour) in an offline screenshot of the page."""
    from PIL import Image

    shot = tmp_path / f"{page.stem}.png"
    run = chromium("--window-size=1300,1400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as img:
        colours = dict((c, n) for n, c in img.convert("RGB").getcolors(1 << 20))
    return len(colours), colours.get((0x4E, 0x79, 0xA7), 0)


def test_every_page_draws_offline_without_errors(pages, tmp_path):
    if not CHROMIUM:
        pytest.fail("CI is set but headless Chromium is missing: apt-get install chromium")
    for page in pages:
        recorded, console = probe(page, tmp_path)
        assert recorded == "", f"{page.name}: {recorded}"
        assert not console, f"{page.name}: console output {console}"
        n_colours, bar = bar_pixels(page, tmp_path)
        assert n_colours > 50, f"{page.name}: blank screenshot"
        assert bar > 500, f"{page.name}: no bars drawn"  # the first bar colour


def test_viz_page_is_self_contained(pages):
    text = next(p for p in pages if p.name == "scores_viz.html").read_text()
    assert not re.search(r"""(src|href)=|https?://(?!www\.w3\.org/2000/svg)|import\s*\(|fetch\(""", text)
    assert "pp_output_only (epoch 0)" in text.replace("\\u003c", "<")  # the data is inline


def test_opt_in_inspect_viz_page_needs_its_cdn(tmp_path):
    """--inspect-viz adds inspect-viz's own page; offline the probe sees its CDN imports fail (a blank chart)."""
    pytest.importorskip("inspect_viz")
    if not CHROMIUM:
        pytest.fail("CI is set but headless Chromium is missing: apt-get install chromium")
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "experiment", exp)
    found = summarize(exp, "--inspect-viz")
    assert [p.name for p in found] == ["scores.html", "scores_inspect_viz.html", "scores_viz.html"]
    page = exp / "analysis" / "scores_inspect_viz.html"
    assert "cdn.jsdelivr.net" in page.read_text()
    recorded, console = probe(page, tmp_path)
    _, bar = bar_pixels(page, tmp_path)
    assert (recorded or console) and bar == 0, (recorded, console, bar)
