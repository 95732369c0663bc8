"""Write a plain-text PDF (Helvetica, A4, wrapped lines) with no PDF library.

Used to build the demo's ``docs/volcanoes.pdf`` from ``docs/volcanoes.txt`` and by the tests
to make PDF fixtures:  python examples/make_pdf.py docs/volcanoes.txt docs/volcanoes.pdf
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_text_pdf(path: str | Path, pages: list[str], width: int = 90, lines_per_page: int = 60) -> None:
    """Write ``pages`` (each a string; long ones flow onto further pages) as a PDF."""
    laid_out: list[list[str]] = []
    for page in pages:
        lines: list[str] = []
        for para in page.split("\n"):
            lines.extend(textwrap.wrap(para, width) or [""])
        for i in range(0, max(len(lines), 1), lines_per_page):
            laid_out.append(lines[i : i + lines_per_page])
    objects: list[bytes] = []
    n_pages = len(laid_out)
    # 1: catalog, 2: pages, 3: font, then (page, content) pairs.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(laid_out):
        body = ["BT", "/F1 11 Tf", "13 TL", "56 790 Td"]
        body += [f"({_escape(line)}) Tj T*" for line in lines]
        body.append("ET")
        stream = "\n".join(body).encode("cp1252", errors="replace")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    Path(path).write_bytes(bytes(out))


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    write_text_pdf(dst, [Path(src).read_text(encoding="utf-8")])
