"""Child process for the crash test: puts messages in the outbox until killed.

Prints each message's ``msg_id`` right after :meth:`Outbox.put` returned (that is,
after the commit), one per line, flushed: whatever was printed must survive a
SIGKILL at any moment.
"""

from __future__ import annotations

import sys

from gateway.outbox import Outbox


def main() -> None:
    path = sys.argv[1]
    ob = Outbox(path)
    i = 0
    while True:
        kind = "event" if i % 7 == 0 else "strip"
        device = f"dev-{i % 3}"
        body = {"kind": kind, "n": i, "pad": "x" * 2000}
        msg = ob.put(kind, device, f"ecg/v1/gw/{device}/{kind}", body)
        sys.stdout.write(f"{msg.msg_id} {device} {kind} {msg.seq}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main()
