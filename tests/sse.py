"""Reading a Server-Sent-Events response in tests."""

import json


def sse_events(response) -> list[tuple[str, dict]]:
    """The (event name, data) pairs of a streamed response; an event without a name is a "message"."""
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events
