"""Send unicast messages to one subscriber of a topic, like the FISCO go-sdk example.

    python examples/amop/unicast_pub/publisher.py [endpoint] [topic] [count] [--certs DIR]

Each message goes to one random subscriber; its reply is printed. Without
--certs, SDK certificates come from $AMOP_SDK_CERTS, ./nodes/sdk or ./conf.
"""

import argparse
import sys
import time

import trio

from amop_trio import AmopError, open_amop

MESSAGE = "hello, FISCO BCOS, I am unique broadcast publisher!"


async def main(endpoint: str, topic: str, count: int, certs: str | None) -> None:
    async with open_amop(endpoint, certs=certs) as client:
        for i in range(count):
            text = f"{MESSAGE} {i}"
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} publish message: {text}", flush=True)
            reply = await client.publish(topic, text, timeout=5)
            text = reply.decode("utf-8", "replace")
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} reply: {text}", flush=True)
            await trio.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Send unicasts and print the replies.")
    parser.add_argument("endpoint", nargs="?", default="127.0.0.1:20200")
    parser.add_argument("topic", nargs="?", default="hello")
    parser.add_argument("count", nargs="?", type=int, default=10)
    parser.add_argument(
        "--certs", metavar="DIR", help="SDK certificates (ca.crt, sdk.crt, sdk.key)"
    )
    args = parser.parse_args()
    try:
        trio.run(main, args.endpoint, args.topic, args.count, args.certs)
    except KeyboardInterrupt:
        pass
    except (AmopError, ValueError) as exc:
        sys.exit(f"publisher: {exc}")
