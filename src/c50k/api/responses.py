"""JSON responses serialized with orjson (FastAPI's ORJSONResponse is deprecated), and the ASGI
extension for a whole answer in one message."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# An ASGI extension of c50k's protocol (runtime/protocol.py), present in the scope's
# "extensions" of every request it serves: send
#   {"type": WHOLE_RESPONSE, "status": int, "head": header lines each ending in CRLF,
#    "body": bytes, "close": bool}
# and the answer goes out in one write, its head built by the sender. Without the extension
# (another server, an in-process client) senders use the standard two messages.
WHOLE_RESPONSE = "c50k.http.response.whole"
