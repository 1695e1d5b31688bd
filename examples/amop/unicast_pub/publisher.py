"""Send unicast messages to one subscriber of a topic, like the FISCO go-sdk example.

    python examples/amop/unicast_pub/publisher.py [endpoint] [topic] [count]

Each message goes to one random subscriber; its reply is printed.
"""

import sys
import time

import trio

from amop_trio import AmopError, open_amop

MESSAGE = "hello, FISCO BCOS, I am unique broadcast publisher!"


async def main(endpoint: str, topic: str, count: int) -> None:
    async with open_amop(endpoint) as client:
        for i in range(count):
            text = f"{MESSAGE} {i}"
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} publish message: {text}", flush=True)
            reply = await client.publish(topic, text, timeout=5)
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} reply: {reply.decode()}", flush=True)
            await trio.sleep(0.5)


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:20200"
    topic = sys.argv[2] if len(sys.argv) > 2 else "hello"
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    try:
        trio.run(main, endpoint, topic, count)
    except KeyboardInterrupt:
        pass
    except AmopError as exc:
        sys.exit(f"publisher: {exc}")
