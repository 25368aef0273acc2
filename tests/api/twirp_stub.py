"""A loopback stand-in for LiveKit's Twirp API, for API tests that need a dispatch to succeed without a media server.
(The end-to-end tier runs the real livekit-server.)"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.test_utils import TestServer
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip

# Twirp methods the stub answers with an error instead: `server.app[FAILING]["CreateSIPInboundTrunk"] = "why"`.
FAILING = web.AppKey("failing", dict)
SIP_OBJECTS = web.AppKey("sip_objects", dict)  # the SIP trunks and dispatch rules the stub holds, by id


async def start_twirp_stub(
    participants: dict[str, list[int]] | None = None,
) -> tuple[TestServer, list[tuple[str, bytes]]]:
    """`participants` maps a room to the kinds of the participants LiveKit would list in it (mutable by tests)."""
    calls: list[tuple[str, bytes]] = []
    rooms = participants if participants is not None else {}

    async def create_dispatch(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append(("CreateDispatch", body))
        req = proto_dispatch.CreateAgentDispatchRequest()
        req.ParseFromString(body)
        out = proto_dispatch.AgentDispatch(
            id=f"AD_{uuid.uuid4().hex[:8]}", agent_name=req.agent_name, room=req.room, metadata=req.metadata
        )
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    async def delete_room(request: web.Request) -> web.Response:
        calls.append(("DeleteRoom", await request.read()))
        return web.Response(
            body=proto_room.DeleteRoomResponse().SerializeToString(), content_type="application/protobuf"
        )

    async def delete_dispatch(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append(("DeleteDispatch", body))
        req = proto_dispatch.DeleteAgentDispatchRequest()
        req.ParseFromString(body)
        out = proto_dispatch.AgentDispatch(id=req.dispatch_id, room=req.room)
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    async def remove_participant(request: web.Request) -> web.Response:
        calls.append(("RemoveParticipant", await request.read()))
        return web.Response(
            body=proto_room.RemoveParticipantResponse().SerializeToString(), content_type="application/protobuf"
        )

    async def send_data(request: web.Request) -> web.Response:
        calls.append(("SendData", await request.read()))
        return web.Response(body=proto_room.SendDataResponse().SerializeToString(), content_type="application/protobuf")

    async def list_participants(request: web.Request) -> web.Response:
        req = proto_room.ListParticipantsRequest()
        req.ParseFromString(await request.read())
        out = proto_room.ListParticipantsResponse(
            participants=[
                proto_models.ParticipantInfo(identity=f"p{i}", kind=kind)
                for i, kind in enumerate(rooms.get(req.room, []))
            ]
        )
        return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

    sip_objects: dict[str, object] = {}

    def sip_method(name: str, request_type, respond):
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            calls.append((name, body))
            if name in request.app[FAILING]:
                return web.json_response({"code": "internal", "msg": request.app[FAILING][name]}, status=500)
            req = request_type()
            req.ParseFromString(body)
            out = respond(req)
            if out is None:
                return web.json_response({"code": "not_found", "msg": "object not found"}, status=404)
            return web.Response(body=out.SerializeToString(), content_type="application/protobuf")

        return handler

    def create_trunk(req):
        trunk = proto_sip.SIPInboundTrunkInfo()
        trunk.CopyFrom(req.trunk)
        trunk.sip_trunk_id = f"ST_{uuid.uuid4().hex[:12]}"
        sip_objects[trunk.sip_trunk_id] = trunk
        return trunk

    def delete_trunk(req):
        return (
            proto_sip.SIPTrunkInfo(sip_trunk_id=req.sip_trunk_id) if sip_objects.pop(req.sip_trunk_id, None) else None
        )

    def create_rule(req):
        rule = proto_sip.SIPDispatchRuleInfo()
        rule.CopyFrom(req.dispatch_rule)
        rule.sip_dispatch_rule_id = f"SDR_{uuid.uuid4().hex[:12]}"
        sip_objects[rule.sip_dispatch_rule_id] = rule
        return rule

    def update_rule(req):
        if req.sip_dispatch_rule_id not in sip_objects:
            return None
        rule = proto_sip.SIPDispatchRuleInfo()
        rule.CopyFrom(req.replace)
        rule.sip_dispatch_rule_id = req.sip_dispatch_rule_id
        sip_objects[rule.sip_dispatch_rule_id] = rule
        return rule

    def delete_rule(req):
        return sip_objects.pop(req.sip_dispatch_rule_id, None)

    app = web.Application()
    app[FAILING] = {}
    app[SIP_OBJECTS] = sip_objects
    for name, request_type, respond in (
        ("CreateSIPInboundTrunk", proto_sip.CreateSIPInboundTrunkRequest, create_trunk),
        ("DeleteSIPTrunk", proto_sip.DeleteSIPTrunkRequest, delete_trunk),
        ("CreateSIPDispatchRule", proto_sip.CreateSIPDispatchRuleRequest, create_rule),
        ("UpdateSIPDispatchRule", proto_sip.UpdateSIPDispatchRuleRequest, update_rule),
        ("DeleteSIPDispatchRule", proto_sip.DeleteSIPDispatchRuleRequest, delete_rule),
    ):
        app.router.add_post(f"/twirp/livekit.SIP/{name}", sip_method(name, request_type, respond))
    app.router.add_post("/twirp/livekit.AgentDispatchService/DeleteDispatch", delete_dispatch)
    app.router.add_post("/twirp/livekit.RoomService/ListParticipants", list_participants)
    app.router.add_post("/twirp/livekit.AgentDispatchService/CreateDispatch", create_dispatch)
    app.router.add_post("/twirp/livekit.RoomService/DeleteRoom", delete_room)
    app.router.add_post("/twirp/livekit.RoomService/RemoveParticipant", remove_participant)
    app.router.add_post("/twirp/livekit.RoomService/SendData", send_data)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, calls
