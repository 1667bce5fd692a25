"""Drains a queue with stomp.py, as a Python backend behind an /app route would:
one consumer over STOMP/TCP, client-individual acks, an ACK per message.

    PYTHONPATH=$(scripts/python-deps) python3 benches/route_consumer.py 127.0.0.1 61613 svc svc-pw /queue/bench 20000 100

Prints the rate from the SUBSCRIBE to the last message. benches/compare.sh routes
fills the queue first (loadgen drain --consumers 0).
"""

import sys
import threading
import time

import stomp


def main():
    host, port, login, passcode, destination = sys.argv[1:6]
    messages, prefetch = int(sys.argv[6]), int(sys.argv[7])
    conn = stomp.Connection12([(host, int(port))], heartbeats=(0, 0))
    done = threading.Event()
    got = [0]

    class Drain(stomp.ConnectionListener):
        def on_message(self, frame):
            conn.ack(frame.headers["ack"])
            got[0] += 1
            if got[0] == messages:
                done.set()

    conn.set_listener("drain", Drain())
    conn.connect(login, passcode, wait=True)
    began = time.perf_counter()
    conn.subscribe(destination, id="drain", ack="client-individual",
                   headers={"prefetch-count": str(prefetch)})
    if not done.wait(120):
        sys.exit(f"only {got[0]} of {messages} messages came")
    took = time.perf_counter() - began
    print(f"python drain of {destination} (stomp.py {stomp.__version__} over TCP, prefetch {prefetch}, "
          f"an ACK each): {messages} in {took:.2f} s, {messages / took:.0f} msg/s", flush=True)
    conn.disconnect()


if __name__ == "__main__":
    main()
