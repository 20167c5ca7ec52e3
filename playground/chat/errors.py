class ChatError(Exception):
    """A request the user can fix; the message says how. Nothing they typed is lost."""
