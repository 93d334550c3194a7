"""Text-length limits shared by model fields, event schemas and messages: a reason or message
cut to these fits every column and payload it is copied into."""

NAME_MAX = 128  # model names, rule names, sources, intent keys
USER_MAX = 150  # Django's username length
TEXT_MAX = 2000  # reasons, messages
SHORT_TEXT_MAX = 500  # one reason among several


def clip(text: object, limit: int = TEXT_MAX) -> str:
    """`text` as a string of at most `limit` characters."""
    return str(text)[:limit]
