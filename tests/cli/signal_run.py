#!/usr/bin/env python3
"""Runs a command, sends it a signal once a file has enough lines, and exits with its status.

  signal_run.py SIGNAL LINES FILE OUT -- COMMAND...

SIGNAL is INT or TERM; the command's stdout and stderr go to OUT. Started from here rather
than as a shell background job, the command sees SIGINT as a terminal's Ctrl-C would send it
(a shell's background jobs ignore SIGINT).
"""
import signal
import subprocess
import sys
import time


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def main():
    sig, want, path, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    command = sys.argv[sys.argv.index("--") + 1:]
    with open(out, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while lines(path) < want and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(getattr(signal, "SIG" + sig))
        sys.exit(proc.wait())


if __name__ == "__main__":
    main()
