"""Channels layer: Redis pub/sub (cheap group_send; the dashboard only needs live fan-out)."""
from urllib.parse import urlparse

from .env import read

_redis_url = read("REDIS_URL")
# Redis pub/sub channels ignore the database number, so two deployments (or a test run beside
# `make run`) on one Redis server would hear each other: the prefix carries the db number.
_redis_db = (urlparse(_redis_url).path or "/0").strip("/") or "0"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [_redis_url], "prefix": f"qt-db{_redis_db}"},
    }
}
