"""Data engine: dataset registry, formats, templates, processors, packing."""
