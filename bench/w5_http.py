"""W5 plaintext HTTP responder in Python, as bench/w5_http.cpp: per connection, readuntil(b"\r\n\r\n"),
write the fixed "Hello, World!" response, drain. Listens on 127.0.0.1:0, prints "PORT <port>", serves
until killed (SIGTERM) or --seconds S have passed (default 120).

Usage: /usr/bin/python3 w5_http.py asyncio|uvloop [--seconds S]
"""
import asyncio
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"


async def respond(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def serve(seconds):
    server = await asyncio.start_server(respond, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.sleep(seconds)
    server.close()


def main():
    args = sys.argv[1:]
    impl = args.pop(0) if args else "asyncio"
    seconds = 120.0
    if len(args) == 2 and args[0] == "--seconds":
        seconds = float(args[1])
    elif args:
        sys.exit("usage: w5_http.py asyncio|uvloop [--seconds S]")
    if impl == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    elif impl == "asyncio":
        factory = asyncio.new_event_loop
    else:
        sys.exit("usage: w5_http.py asyncio|uvloop [--seconds S]")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(seconds))


if __name__ == "__main__":
    main()
