"""Subscribe to a topic and print every message, like the FISCO go-sdk example.

    python examples/amop/sub/subscriber.py [endpoint] [topic]

Unicasts are answered with "ok"; the publisher prints that reply.
"""

import sys
import time

import trio

from amop_trio import AmopError, MessageKind, open_amop


async def main(endpoint: str, topic: str) -> None:
    async with open_amop(endpoint) as client, client.subscribe(topic) as subscription:
        print("Subscriber success", flush=True)
        async for message in subscription:
            text = message.data.decode("utf-8", "replace")
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} received: {text}", flush=True)
            if message.kind is MessageKind.UNICAST:
                await message.reply(b"ok")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:20201"
    topic = sys.argv[2] if len(sys.argv) > 2 else "hello"
    try:
        trio.run(main, endpoint, topic)
    except KeyboardInterrupt:
        pass
    except AmopError as exc:
        sys.exit(f"subscriber: {exc}")
