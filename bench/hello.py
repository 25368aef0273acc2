"""The floor for API throughput: a bare aiohttp hello-world on the same machine."""

import sys

from aiohttp import web


async def hello(_request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
