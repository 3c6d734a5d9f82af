"""Write a benchmark's table into its own marked section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(key: str, title: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) the section between <!-- bench:KEY:begin/end --> markers of `doc` (docs/benchmarks.md)."""
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n\nEach section is written by the script named in it.\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n## {title}\n\n{block}\n"
    doc.write_text(text)
    return doc
