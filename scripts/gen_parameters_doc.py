"""Write docs/parameters.md from the schema: `python scripts/gen_parameters_doc.py`."""

from pathlib import Path

from tuneforge.config.docs import render

target = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
target.write_text(render(), encoding="utf-8")
print(f"wrote {target}")
