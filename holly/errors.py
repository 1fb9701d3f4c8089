"""The one exception type users see."""


class HollyError(Exception):
    """A problem the user can fix: bad input, bad config, missing file.

    The message names the file or key and says what to do. The CLI prints it as a single
    ``error: ...`` line and exits with status 2.
    """


def one_line(exc: BaseException) -> str:
    """A parser's (often multi-line) message as one line, for an ``error: ...`` line."""
    return " ".join(str(exc).split())
