"""``tuneforge check CONFIG [overrides]``: resolve a config and report everything about it, no model loaded."""

from __future__ import annotations

import argparse
import json
import sys

from ..config.diagnostics import ConfigError
from ..config.report import render_text, to_json
from .common import report_config_error, resolve_args


def run(args: argparse.Namespace) -> int:
    try:
        res = resolve_args(args)
    except ConfigError as err:
        if args.json:
            diags = [d.to_json() for d in err.diagnostics]
            print(json.dumps({"resolved": {}, "sources": {}, "groups": {}, "diagnostics": diags}, indent=2))
            return 2
        return report_config_error(err)
    if args.json:
        print(json.dumps(to_json(res), indent=2, default=str))
    else:
        render_text(res, sys.stdout, show_all=args.all)
    return 2 if res.errors else 0
