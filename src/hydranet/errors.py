"""User-facing errors.

A `UserError` is a mistake in what the user gave (config, file, column, image). The CLI prints its
one-line message to stderr and exits with code 2; anything else keeps its traceback.
"""


class UserError(Exception):
    """A bad input from the user; the message names the field/file/column and what was expected."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
