"""Realtime (WebSocket) connections: refused at once, with a reason the clients show.

fal's realtime apps (``wss://fal.run/<app>/realtime``) are not emulated; any-llm has none.
A client that tries one should learn that straight away rather than wait for a timeout.
The upgrade is accepted and the connection closed at once with code 1008 and a reason:
a refused upgrade (HTTP 403) reaches the JS client only as "Unknown error", while a close
reaches it as ``onError`` with the reason, and fal-client raises ``RealtimeError`` with it.
"""

from __future__ import annotations

from starlette.websockets import WebSocket

POLICY_VIOLATION = 1008
# A close reason must fit in 123 bytes.
REASON = "Realtime (WebSocket) apps are not emulated: use run, stream or the queue"


async def refuse(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(code=POLICY_VIOLATION, reason=REASON)
