"""Control a running model switch from the shell (also the device hooks' demo):

    python -m ctcm_ptf.ctl SOCKET reset | counters | configure < config.json

``counters`` prints {key: value} JSON; ``configure`` reads Config.to_dict() JSON.
"""

from __future__ import annotations

import json
import sys

from .modelutil import config_from_dict
from .targets import ModelTarget


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[1] not in ("reset", "counters", "configure"):
        print(__doc__, file=sys.stderr)
        return 2
    t = ModelTarget(control=argv[0])
    if argv[1] == "reset":
        t.reset()
    elif argv[1] == "counters":
        print(json.dumps(t.counters()))
    else:
        t.configure(config_from_dict(json.load(sys.stdin)))
    t.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
