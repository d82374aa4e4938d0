"""An asyncio stream handler (Node's net.createServer listener): a line echo server.

    sockserve --workers 2 --interface stream examples.stream_echo:handle
    printf 'hi\n' | nc -q1 127.0.0.1 8000
"""


async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()
