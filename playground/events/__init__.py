"""Real-time fan-out, in one place: group names, event types, the live-text store, the
coalescing delta sender and the production channel layer (one module each, re-exported here).

Every browser tab on a session joins `session-<id>`; every event is a ready HTML fragment
(rendered once, from the same template partials as the pages, autoescaped) that the htmx
WebSocket extension swaps out-of-band, except a turn's end (`turn_ended`), which the web
process holding the tabs renders, once per turn. Generation jobs also listen on `turn-<id>`
for a stop.

Gap-free joins: the generation writes the whole text so far to the live store *before* it
publishes each delta, and a joining tab subscribes first and reads the store second. So the
snapshot covers every delta the tab missed, and deltas it sees twice carry a sequence number
at or below the snapshot's, which the browser drops (static/js/app.js).

Publishing is best effort (production uses Redis pub/sub: nothing is queued for anyone), so
a delta can be lost: while Redis restarts, or if a tab's SUBSCRIBE reached Redis after its
snapshot read. The browser notices the skipped sequence number and asks its socket for the
text so far (`{"resync": id}`, SessionConsumer.receive), so a lost delta never shows as a hole.
"""

from .frames import DeltaStream, Frame, FrameSender, store_and_publish
from .groups import (
    HTML_EVENT,
    STOP_EVENT,
    TRANSPORT_ERRORS,
    TURN_ENDED_EVENT,
    TURN_PROGRESS_EVENT,
    publish,
    publish_sync,
    session_group,
    stop_send,
    stop_send_sync,
    turn_ended,
    turn_ended_sync,
    turn_group,
    turn_progress,
)
from .layer import TAB_QUEUE_LIMIT, BoundedPubSubChannelLayer
from .live import LIVE_TTL_SECONDS, live_store

__all__ = [
    "HTML_EVENT", "STOP_EVENT", "TRANSPORT_ERRORS", "TURN_ENDED_EVENT", "TURN_PROGRESS_EVENT", "LIVE_TTL_SECONDS",
    "TAB_QUEUE_LIMIT", "BoundedPubSubChannelLayer", "DeltaStream", "Frame", "FrameSender", "live_store", "publish",
    "publish_sync", "session_group", "stop_send", "stop_send_sync", "store_and_publish", "turn_ended",
    "turn_ended_sync", "turn_group", "turn_progress",
]
