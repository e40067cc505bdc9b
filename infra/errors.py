"""The one error type infra raises: its message is a single line meant for the user."""


class InfraError(RuntimeError):
    """An infra step that cannot go on; ``str(exc)`` names the cause and what to do."""
