"""The secrets of notification channels: encrypting Apprise URLs at rest, and keeping them out of
every log line and error text.

An Apprise URL is a credential (a bot token, a webhook's signed path, an SMTP password), so:

- a URL typed in the admin or the API is stored Fernet-encrypted. The key is
  FIELD_ENCRYPTION_KEY (one or more Fernet keys, comma-separated: the first encrypts, all
  decrypt, which is how a key is rotated), and the key derived from SECRET_KEY (HKDF-SHA256)
  when it is empty. The derived key always decrypts too, so URLs stored before
  FIELD_ENCRYPTION_KEY was set stay readable. Rotating SECRET_KEY without FIELD_ENCRYPTION_KEY
  makes the stored URLs unreadable: their channels then fail with `url_encrypted` named, and
  the URL has to be typed again;
- every part of a URL this process has used (host, user, password, path segments, query values)
  is replaced by "***" in the records of the loggers that see it (Apprise, urllib3) and in the
  error texts stored on channels and deliveries (`redact`).
"""
from __future__ import annotations

import base64
import logging
import re
import threading
from urllib.parse import quote, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

REDACTED = "***"

# Both fixed: changing either changes the derived key and makes every stored URL unreadable.
_HKDF_SALT = b"quantum-trader/analytics.notifications"
_HKDF_INFO = b"NotificationChannel.url_encrypted"

# URL pieces shorter than this are not treated as secrets: a port or a chat id of 2-3 digits
# would otherwise turn every such number in a message into "***", and no token is that short.
_MIN_SECRET_LEN = 4
_SEPARATORS = re.compile(r"[/:@?&=#,;+\s]+")


class SecretUnreadable(ValueError):
    """A stored URL cannot be decrypted with the configured keys (SECRET_KEY or
    FIELD_ENCRYPTION_KEY changed). Needs an operator: type the URL again."""


class EncryptionKeyInvalid(ValueError):
    """FIELD_ENCRYPTION_KEY holds something that is not a Fernet key. Needs an operator."""


def _derived_key(secret_key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def _fernet() -> MultiFernet:
    from django.conf import settings

    keys: list[Fernet] = []
    for i, key in enumerate(k.strip() for k in (settings.FIELD_ENCRYPTION_KEY or "").split(",")):
        if not key:
            continue
        try:
            keys.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise EncryptionKeyInvalid(
                f"FIELD_ENCRYPTION_KEY: key {i + 1} is not a Fernet key (32 url-safe base64-encoded bytes; make one "
                "with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
    if settings.SECRET_KEY:
        keys.append(Fernet(_derived_key(settings.SECRET_KEY)))
    if not keys:
        raise EncryptionKeyInvalid("FIELD_ENCRYPTION_KEY and SECRET_KEY are both empty: nothing to encrypt with")
    return MultiFernet(keys)


def encrypt_url(url: str) -> str:
    return _fernet().encrypt(url.encode()).decode()


def decrypt_url(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "url_encrypted: cannot be decrypted with FIELD_ENCRYPTION_KEY or the key derived from SECRET_KEY "
            "(was one of them changed?); type the channel's URL again"
        ) from None


def url_scheme(url: str) -> str:
    """The scheme alone ('json', 'tgram'): the one part of a URL that may be shown."""
    head, sep, _ = url.partition("://")
    return head.strip().lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head.strip()) else ""


def secret_parts(url: str) -> set[str]:
    """The URL and every piece of it that may be a credential, as written and URL-(un)quoted."""
    url = url.strip()
    if not url:
        return set()
    scheme = url_scheme(url)
    rest = url.split("://", 1)[1] if scheme else url
    parts = {url, rest}
    try:
        split = urlsplit(url)
        parts.update(p for p in (split.netloc, split.path, split.query, split.username, split.password,
                                 split.hostname) if p)
    except ValueError:  # an unparseable port or netloc: the separators below still cut it up
        pass
    parts.update(_SEPARATORS.split(rest))
    expanded = set()
    for p in parts:
        expanded.update({p, unquote(p), quote(p, safe=""), quote(unquote(p), safe="")})
    return {p for p in expanded if len(p) >= _MIN_SECRET_LEN and p.lower() != scheme}


# Parts of every URL this process has resolved: the loggers' filter redacts them whatever thread
# logs (Apprise sends from its own worker threads).
_known: set[str] = set()
_known_lock = threading.Lock()


def register_url(url: str) -> None:
    """Remember a URL's parts so that no log record of Apprise or urllib3 shows them."""
    parts = secret_parts(url)
    if parts - _known:
        with _known_lock:
            _known.update(parts)


def redact(text: str, *urls: str) -> str:
    """`text` with every part of `urls`, and of every URL registered in this process, replaced by ***."""
    parts = set().union(*(secret_parts(u) for u in urls if u)) if urls else set()
    with _known_lock:
        parts |= _known
    for p in sorted(parts, key=len, reverse=True):  # longest first: a URL before its host
        if p in text:
            text = text.replace(p, REDACTED)
    return text


class _RedactUrls(logging.Filter):
    """Rewrites a record that contains a part of a registered URL (Apprise logs the URL it loaded
    at DEBUG, the host it failed to reach at WARNING, an unparseable URL at ERROR)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _known:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: left to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# A logger's filter sees only the records logged on that very logger, so each one that may print
# a URL is named.
_FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "requests")


def install_log_redaction() -> None:
    """Idempotent: add the filter to the loggers that may print a channel's URL."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactUrls) for f in logger.filters):
            logger.addFilter(_RedactUrls())


install_log_redaction()
