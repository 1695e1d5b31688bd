"""Send multicast messages to every subscriber of a topic, like the FISCO go-sdk example.

    python examples/amop/multicast_pub/publisher.py [endpoint] [topic] [count] [--certs DIR]

Without --certs, SDK certificates come from $AMOP_SDK_CERTS, ./nodes/sdk or ./conf.
"""

import argparse
import sys
import time

import trio

from amop_trio import AmopError, open_amop

MESSAGE = "hello, FISCO BCOS, I am multi broadcast publisher!"


async def main(endpoint: str, topic: str, count: int, certs: str | None) -> None:
    async with open_amop(endpoint, certs=certs) as client:
        for i in range(count):
            text = f"{MESSAGE} {i}"
            print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} publish message: {text}", flush=True)
            await client.broadcast(topic, text)
            await trio.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Send multicasts to every subscriber.")
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
