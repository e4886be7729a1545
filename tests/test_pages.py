"""Every HTML page `summarize` writes, opened OFFLINE in a real browser (headless Chromium, Debian package
`chromium`): the charts draw (the screenshot holds the bar colours, not a blank page), no script or
resource error reaches the console, and no chart label sticks out of its SVG (the first x label of
scores.html used to be clipped). Skipped when chromium is absent, unless CI is set (then it fails)."""
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
  document.title = "CK-PROBE[" + window.__ck.join(" | ") + "]";
}, 500));
</script>"""
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *OFFLINE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("pages")
    exp = root / "exp"
    shutil.copytree(FIXTURES / "experiment", exp)
    (root / "s.md").write_text("# settings\n")
    env = {"CK_SCRATCH": str(root), "CK_SETTINGS": str(root / "s.md")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert cli_main(["summarize", str(exp), "--quiet"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    found = sorted((exp / "analysis").glob("*.html"))
    assert [p.name for p in found] == ["scores.html"]  # every page summarize writes by default
    return found


def test_every_page_draws_offline_without_errors(pages, tmp_path):
    from PIL import Image

    if not CHROMIUM:
        pytest.fail("CI is set but headless Chromium is missing: apt-get install chromium")

    for page in pages:
        probe = tmp_path / page.name
        probe.write_text(re.sub(r"(<head[^>]*>)", r"\1" + PROBE.replace("\\", "\\\\"), page.read_text(), count=1))
        dom = chromium("--dump-dom", probe.as_uri())
        title = re.search(r"<title>CK-PROBE\[(.*?)\]</title>", dom.stdout, re.S)
        assert title, f"{page.name}: the page did not finish loading\n{dom.stderr[-2000:]}"
        assert title.group(1) == "", f"{page.name}: {title.group(1)}"
        console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
        assert not console, f"{page.name}: console output {console}"
        shot = tmp_path / f"{page.stem}.png"
        run = chromium("--window-size=1300,1400", f"--screenshot={shot}", page.as_uri())
        assert shot.is_file(), run.stderr[-2000:]
        with Image.open(shot) as img:
            rgb = img.convert("RGB")
            colours = dict((c, n) for n, c in rgb.getcolors(1 << 20))
        assert len(colours) > 50, f"{page.name}: blank screenshot"
        assert colours.get((0x4E, 0x79, 0xA7), 0) > 500, f"{page.name}: no bars drawn"  # the first bar colour
