"""HTML to PDF through headless Chromium (Debian's /usr/bin/chromium): the page is printed as
the browser lays it out, charts included. A throwaway profile directory per run, and no
background networking: the report is one local file and nothing else is fetched."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 180.0


class PdfError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def html_to_pdf(html: str, output: Path, *, chromium: str | None = None, timeout: float = TIMEOUT_S) -> None:
    """Print `html` to the PDF file `output`; PdfError says why it could not."""
    binary = chromium or find_chromium()
    if binary is None:
        raise PdfError("no Chromium found (apt-get install chromium): PDF needs a headless browser; --format html works without")
    with tempfile.TemporaryDirectory(prefix="monitor-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-pdf-header-footer", f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={target}", page.as_uri(),
        ]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not finish printing within {timeout:.0f} s") from None
        if proc.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise PdfError(f"Chromium failed to print the report (exit {proc.returncode}): {tail}")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, output)
