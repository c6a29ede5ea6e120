"""How a command ends on a user error or a closed pipe: one line on stderr and exit 2, or quietly; never a traceback."""
import os
import sys


def user_error(prog: str, error: BaseException) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


def closed_pipe() -> int:
    """stdout's reader has gone (``| head``): the rest of the output is unwanted, not an error. stdout is pointed
    at /dev/null so the interpreter's last flush succeeds, and the exit status is a SIGPIPE death's (128 + 13)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141
