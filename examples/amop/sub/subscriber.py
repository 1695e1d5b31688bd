"""Subscribe to a topic and print every message, like the FISCO go-sdk example.

    python examples/amop/sub/subscriber.py [endpoint] [topic] [--certs DIR]

Unicasts are answered with "ok"; the publisher prints that reply. Without
--certs, SDK certificates come from $AMOP_SDK_CERTS, ./nodes/sdk or ./conf.
"""

import argparse
import sys
import time

import trio

from amop_trio import AmopError, MessageKind, open_amop


async def main(endpoint: str, topic: str, certs: str | None) -> None:
    async with (
        open_amop(endpoint, certs=certs) as client,
        client.subscribe(topic) as subscription,
    ):
        print("Subscriber success", flush=True)
        async for message in subscription:
            text = message.data.decode("utf-8", "replace")
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} received: {text}", flush=True)
            if message.kind is MessageKind.UNICAST:
                await message.reply(b"ok")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print every message of a topic.")
    parser.add_argument("endpoint", nargs="?", default="127.0.0.1:20201")
    parser.add_argument("topic", nargs="?", default="hello")
    parser.add_argument(
        "--certs", metavar="DIR", help="SDK certificates (ca.crt, sdk.crt, sdk.key)"
    )
    args = parser.parse_args()
    try:
        trio.run(main, args.endpoint, args.topic, args.certs)
    except KeyboardInterrupt:
        pass
    except (AmopError, ValueError) as exc:
        sys.exit(f"subscriber: {exc}")
