"""The report in a real browser (Debian's headless Chromium): no console message, every image decoded (non-zero
natural width), every expected section present; a screenshot is saved for people to look at."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.report.test_report import RUN_SECTIONS, TABLE_SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(tempfile.gettempdir())  # hydranet-report-<run>.png outlive the test's tmp_path
# Appended to a copy of the report: once loaded, write what the test checks into the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({widths: [...document.images].map(img => img.naturalWidth),
                                    sections: [...document.querySelectorAll("details[id]")].map(d => d.id)});
  document.body.appendChild(out);
});
</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium; "
                                                         ".ci/run installs it when run as root)")


def chromium(*args):
    """Run headless Chromium; its stderr carries page console messages as CONSOLE lines (--enable-logging)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
               "--v=0", "--virtual-time-budget=5000", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.parametrize("report, expected", [("image_report", RUN_SECTIONS), ("fair_report", TABLE_SECTIONS)],
                         ids=["image", "table"])
def test_the_report_renders_in_chromium_without_errors(report, expected, request, tmp_path):
    """The image run (attacks, attributions over pictures) and the audited table run (importance, fairness)."""
    html = request.getfixturevalue(report)[1]
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = chromium("--dump-dom", probed.as_uri())
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, "the page logged:\n" + "\n".join(console)
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S).group(1).replace("&quot;", '"'))
    assert found["sections"] == expected
    assert len(found["widths"]) == html.count("<img ") and min(found["widths"]) > 0

    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,6000", page.as_uri())
    assert screenshot.stat().st_size > 50_000
    shutil.copyfile(screenshot, SCREENSHOTS / f"hydranet-report-{report.split('_')[0]}.png")
