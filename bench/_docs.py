"""Write a benchmark's table into its own marked section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(key: str, title: str, body: str) -> Path:
    """Replace (or append) the section between <!-- bench:KEY:begin/end --> markers."""
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    doc = DOC.read_text() if DOC.is_file() else "# Benchmarks\n\nEach section is written by the script named in it.\n"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc += f"\n## {title}\n\n{block}\n"
    DOC.write_text(doc)
    return DOC
