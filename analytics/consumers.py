"""The dashboard websocket: authenticated users only; forwards bus events the page shows."""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from qtweb.events.push import DASHBOARD_GROUP

# Event types the health grid needs. Later dashboard panels add theirs here.
FORWARDED_TYPES = {"service.heartbeat", "health.status", "system.alert",
                   # the risk panel (static/dashboard/risk-panel.js): the mode and the open positions
                   "system.mode_changed", "position.opened", "position.closed",
                   # the learning panel (static/dashboard/learning-panel.js)
                   "learning.event"}
# Close code for "not logged in" (4000-4999 are application codes).
CLOSE_UNAUTHENTICATED = 4401


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"kind": "snapshot", "services": await self._snapshot()})

    async def disconnect(self, code):
        if self.channel_layer is not None:
            await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("kind") == "refresh":
            await self.send_json({"kind": "snapshot", "services": await self._snapshot()})
        else:
            await self.send_json({"kind": "error", "message": "unknown message; send {\"kind\": \"refresh\"}"})

    async def bus_event(self, message):
        event = message.get("event") or {}
        if event.get("type") in FORWARDED_TYPES:
            await self.send_json({"kind": "event", "event": event})

    @database_sync_to_async
    def _snapshot(self):
        from qtweb.health.status import service_statuses

        return service_statuses()
