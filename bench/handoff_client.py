"""Load for the hand-off micro-benchmark: connect, wait for the server's close, repeat.

Run as ``python handoff_client.py PORT CONCURRENCY SECONDS``; prints the count of
completed connections.  Bounded by SECONDS; each connection waits for EOF, so at
most CONCURRENCY connections are ever in flight (no accept-queue overflow).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time


async def _one_loop(port: int, deadline: float, counts: list[int]) -> None:
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await asyncio.wait_for(loop.sock_recv(sock, 1), timeout=2.0)
            counts[0] += 1
        except (TimeoutError, OSError):
            counts[1] += 1
        finally:
            sock.close()


async def _main(port: int, concurrency: int, seconds: float) -> list[int]:
    counts = [0, 0]  # completed, failed
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_one_loop(port, deadline, counts) for _ in range(concurrency)))
    return counts


def main() -> None:
    port, concurrency, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    done, failed = run(_main(port, concurrency, seconds))
    print(f"{done} {failed}")


if __name__ == "__main__":
    main()
