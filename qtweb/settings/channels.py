"""Channels layer: Redis pub/sub (cheap group_send; the dashboard only needs live fan-out)."""
from .env import read

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [read("REDIS_URL")]},
    }
}
