"""Domain exceptions: every user mistake becomes one of these, with one line naming the fix."""


class SmoothprobeError(Exception):
    """A problem the user can fix (bad file, option or data); the CLI prints it as one line.

    Args:
        message: what is wrong and how to fix it, in the library's terms (argument names, never
            command-line flags).
        option: the library argument the fix concerns (e.g. ``"data_path"``); the command line
            adds the matching flag to the message.
    """

    def __init__(self, message: str = "", *, option: str | None = None):
        super().__init__(message)
        self.option = option


class CheckpointError(SmoothprobeError):
    """A checkpoint cannot be read or does not match the model."""


class DataError(SmoothprobeError):
    """The evaluation data cannot be read or is too small."""


class NonDeterministicLossError(SmoothprobeError):
    """Two evaluations of the loss (or of one HVP) at the same point disagree."""


class NonFiniteError(SmoothprobeError):
    """NaN or Inf in parameters, loss or gradient."""


def quoted(exc: BaseException) -> str:
    """An underlying error's whole message on one line (never cut mid-sentence).

    A message is quoted whole or not at all: the lines are joined, nothing is dropped. An error
    without a message is named by its type.
    """
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
