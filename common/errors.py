"""The one exception type for mistakes a user can fix (bad path, bad YAML, unknown name).

Command-line entry points catch it, print its message and exit with status 2, so a user never sees a
traceback for their own input errors.
"""


class UserError(Exception):
    """An error caused by user input; its message names the problem and the fix."""
