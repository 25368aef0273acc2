"""A loopback stand-in for LiveKit's Twirp API, for API tests that need a dispatch to succeed without a media server.
(The end-to-end tier runs the real livekit-server.)"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.test_utils import TestServer
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room


async def start_twirp_stub(participants: dict[str, list[int]] | None = None
                           ) -> tuple[TestServer, list[tuple[str, bytes]]]:
    """`participants` maps a room to the kinds of the participants LiveKit would list in it (mutable by tests)."""
    calls: list[tuple[str, bytes]] = []
    rooms = participants if participants is not None else {}

    async def create_dispatch(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append(("CreateDispatch", body))
        req = proto_dispatch.CreateAgentDispatchRequest()
        req.ParseFromString(body)
        out = proto_dispatch.AgentDispatch(id=f"AD_{uuid.uuid4().hex[:8]}", agent_name=req.agent_name, room=req.room,
                                           metadata=req.metadata)
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    async def delete_room(request: web.Request) -> web.Response:
        calls.append(("DeleteRoom", await request.read()))
        return web.Response(body=proto_room.DeleteRoomResponse().SerializeToString(),
                            content_type="application/protobuf")

    async def delete_dispatch(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append(("DeleteDispatch", body))
        req = proto_dispatch.DeleteAgentDispatchRequest()
        req.ParseFromString(body)
        out = proto_dispatch.AgentDispatch(id=req.dispatch_id, room=req.room)
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    async def remove_participant(request: web.Request) -> web.Response:
        calls.append(("RemoveParticipant", await request.read()))
        return web.Response(body=proto_room.RemoveParticipantResponse().SerializeToString(),
                            content_type="application/protobuf")

    async def send_data(request: web.Request) -> web.Response:
        calls.append(("SendData", await request.read()))
        return web.Response(body=proto_room.SendDataResponse().SerializeToString(), content_type="application/protobuf")

    async def list_participants(request: web.Request) -> web.Response:
        req = proto_room.ListParticipantsRequest()
        req.ParseFromString(await request.read())
        out = proto_room.ListParticipantsResponse(participants=[
            proto_models.ParticipantInfo(identity=f"p{i}", kind=kind) for i, kind in enumerate(rooms.get(req.room, []))])
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    app = web.Application()
    app.router.add_post("/twirp/livekit.AgentDispatchService/DeleteDispatch", delete_dispatch)
    app.router.add_post("/twirp/livekit.RoomService/ListParticipants", list_participants)
    app.router.add_post("/twirp/livekit.AgentDispatchService/CreateDispatch", create_dispatch)
    app.router.add_post("/twirp/livekit.RoomService/DeleteRoom", delete_room)
    app.router.add_post("/twirp/livekit.RoomService/RemoveParticipant", remove_participant)
    app.router.add_post("/twirp/livekit.RoomService/SendData", send_data)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, calls
