"""A chat backend for stompede, in Python with stomp.py (docs/applications.md).

It serves the route

    [[app.routes]]
    match = "/app/chat.#"
    queue = "chat"

as Spring's @MessageMapping("/chat.{room}") with @SendTo("/topic/chat.{room}")
and a @SendToUser reply would: it consumes /queue/chat (competing with any other
copy of itself), posts each line to /topic/chat.ROOM as JSON, answers the sender
on the reply-to destination the broker set, and acks. The sender's login comes
from the x-app-login header, which only the broker can set.

    PYTHONPATH=$(scripts/python-deps) python3 examples/backends/chat.py 127.0.0.1 61613 svc svc-pw

It prints "ready" once its subscription is in place. tests/e2e/app-routes.test.mjs
runs it.
"""

import json
import sys
import threading

import stomp


class Chat(stomp.ConnectionListener):
    def __init__(self, conn, ready):
        self.conn = conn
        self.ready = ready

    def on_receipt(self, frame):
        if frame.headers.get("receipt-id") == "subscribed":
            self.ready.set()

    def on_message(self, frame):
        h = frame.headers
        room = h["x-app-destination"].removeprefix("/app/chat.")
        login = h["x-app-login"]
        line = {"room": room, "from": login, "text": frame.body}
        self.conn.send(
            destination=f"/topic/chat.{room}",
            body=json.dumps(line),
            headers={"content-type": "application/json"},
        )
        self.conn.send(
            destination=h["reply-to"],
            body=json.dumps({"posted": True, "room": room}),
            headers={"content-type": "application/json"},
        )
        # Acked once the answers are sent: a backend that dies before this
        # leaves the request to another copy of itself.
        self.conn.ack(h["ack"])

    def on_error(self, frame):
        print(f"error: {frame.headers.get('message')}", file=sys.stderr, flush=True)


def main():
    host, port, login, passcode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0))
    ready = threading.Event()
    conn.set_listener("chat", Chat(conn, ready))
    conn.connect(login, passcode, wait=True)
    conn.subscribe("/queue/chat", id="chat", ack="client-individual", headers={"receipt": "subscribed"})
    if not ready.wait(10):
        sys.exit("no receipt for the subscription")
    print("ready", flush=True)
    # Serves until stdin closes (the test ends it so).
    sys.stdin.read()
    conn.disconnect()


if __name__ == "__main__":
    main()
