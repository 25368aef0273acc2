"""Fake Google Cloud Text-to-Speech: the `google.cloud.texttospeech.v1.TextToSpeech` gRPC service over TLS.

livekit-plugins-google 1.8.9 (`google/tts.py`) talks to it through the real `TextToSpeechAsyncClient`
(grpc_asyncio transport), so the fake serves exactly that:
  StreamingSynthesize (bidi)  client -> {streaming_config: {voice, streaming_audio_config}}, then one
                              {input: {text}} per sentence; server -> {audio_content} chunks per input.
  SynthesizeSpeech (unary)    {input: {text}, voice, audio_config} -> {audio_content}.
PCM is raw s16le mono (the plugin's default), LINEAR16 a WAV file, MP3 real MP3.

Auth as the plugin's credentials-file path does it: the client loads the service account with the
cloud-platform scope and, as every GAPIC client does for service accounts, signs its own JWT
(`always_use_jwt_access`) instead of exchanging one for an OAuth token. Each call carries
`authorization: Bearer <RS256 JWT>`; the fake verifies its signature against the key of the service
account it issued (`service_account_info()`), its issuer, scope and expiry, and answers
UNAUTHENTICATED otherwise, as the real service does. The issued account's `token_uri` points at the
fakes' own loopback server, so even a token exchange would never leave the machine.

TLS: a self-signed certificate for 127.0.0.1/localhost, generated once per process. gRPC reads its roots from
`GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` once per process, before the first secure channel: set it to
`FakeProviders.google_tts_ca_file` before any Google client connects (for a worker, in its environment
before it starts).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from google.cloud import texttospeech_v1 as tts

from .audio import OutputFormat, render_speech, to_wav
from .state import GOOGLE_TTS, FakeState

SERVICE = "google.cloud.texttospeech.v1.TextToSpeech"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_CHUNK_S = 0.25


@dataclass
class ServiceAccount:
    """A service account the fake issued: the JSON a user downloads, and the public half the fake verifies."""

    info: dict[str, Any]
    public_pem: bytes


def issue_service_account(*, token_uri: str, project_id: str = "voxarena-fake") -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"tts-fake@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": email,
        "client_id": str(uuid.uuid4().int)[:21],
        "auth_uri": token_uri,
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ServiceAccount(info=info, public_pem=public_pem)


@functools.cache
def self_signed_tls() -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for 127.0.0.1 and localhost; the certificate is its own root. One per process:
    gRPC loads its roots once per process, so every fake started later must present the same certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voxarena fake google tts")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class GoogleTTSService:
    state: FakeState
    stopping: asyncio.Event
    accounts: dict[str, bytes] = field(default_factory=dict)  # client_email -> public key PEM

    def register(self, account: ServiceAccount) -> None:
        self.accounts[account.info["client_email"]] = account.public_pem

    # --- auth and failures ---------------------------------------------------------------
    def _authorized(self, context: grpc.aio.ServicerContext) -> bool:
        metadata = dict(context.invocation_metadata() or ())
        header = str(metadata.get("authorization", ""))
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :]
        try:
            unverified = jwt.decode(token, verify=False)
            public_pem = self.accounts.get(str(unverified.get("iss")))
            if public_pem is None:
                return False
            claims = jwt.decode(token, certs=public_pem.decode(), verify=True)
        except (ValueError, auth_exceptions.GoogleAuthError):
            return False
        return SCOPE in str(claims.get("scope", "")).split() and claims.get("exp", 0) > time.time()

    async def _admit(self, context: grpc.aio.ServicerContext) -> str | None:
        """Auth, then the injected failure for this call (reject/hang are answered here; drop is returned)."""
        if not self._authorized(context):
            self.state.add(GOOGLE_TTS, "auth_failures")
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "Request had invalid authentication credentials.",
            )
        failure = self.state.take_failure(GOOGLE_TTS)
        if failure == "reject":
            await context.abort(grpc.StatusCode.INTERNAL, "fake internal error")
        if failure == "hang":
            await self.stopping.wait()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake shutting down")
        return failure

    def _count(self, text: str) -> None:
        self.state.add(GOOGLE_TTS, "characters", len(text))
        self.state.add(GOOGLE_TTS, "characters_nonspace", len("".join(text.split())))

    # --- RPCs ----------------------------------------------------------------------------
    async def streaming_synthesize(
        self,
        requests: AsyncIterator[tts.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts.StreamingSynthesizeResponse]:
        failure = await self._admit(context)
        self.state.add(GOOGLE_TTS, "connections")
        self.state.add(GOOGLE_TTS, "requests")
        try:
            config: tts.StreamingSynthesizeConfig | None = None
            async for req in requests:
                if config is None:
                    if "streaming_config" not in req:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "the first request must carry streaming_config",
                        )
                    config = req.streaming_config
                    self.state.record(
                        GOOGLE_TTS,
                        {"streaming_config": type(config).to_dict(config)},
                    )
                    continue
                text = req.input.text or req.input.markup
                if failure == "drop":
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "fake provider failure")
                self._count(text)
                self.state.record(GOOGLE_TTS, {"input": text})
                audio_config = config.streaming_audio_config
                fmt = OutputFormat("pcm", audio_config.sample_rate_hertz or 24000)
                pcm, duration = await render_speech(text, fmt, self.state.script.tts_ms_per_char)
                await self._delay_first_byte()
                self.state.add(GOOGLE_TTS, "audio_seconds_out", duration)
                step = int(fmt.sample_rate * _CHUNK_S) * 2
                for i in range(0, len(pcm), step):
                    yield tts.StreamingSynthesizeResponse(audio_content=pcm[i : i + step])
        finally:
            self.state.add(GOOGLE_TTS, "closed")

    async def synthesize_speech(
        self, req: tts.SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> tts.SynthesizeSpeechResponse:
        failure = await self._admit(context)
        if failure == "drop":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake provider failure")
        text = req.input.text or req.input.markup or req.input.ssml
        self.state.add(GOOGLE_TTS, "requests")
        self._count(text)
        self.state.record(GOOGLE_TTS, {"input": text, "voice": type(req.voice).to_dict(req.voice)})
        rate = req.audio_config.sample_rate_hertz or 24000
        encoding = req.audio_config.audio_encoding
        mp3 = encoding == tts.AudioEncoding.MP3
        fmt = OutputFormat("mp3" if mp3 else "pcm", rate)
        audio, duration = await render_speech(text, fmt, self.state.script.tts_ms_per_char)
        if encoding == tts.AudioEncoding.LINEAR16:
            audio = to_wav(audio, rate)
        await self._delay_first_byte()
        self.state.add(GOOGLE_TTS, "audio_seconds_out", duration)
        return tts.SynthesizeSpeechResponse(audio_content=audio)

    async def _delay_first_byte(self) -> None:
        if self.state.script.tts_first_byte_delay_ms:
            await asyncio.sleep(self.state.script.tts_first_byte_delay_ms / 1000)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                    self.streaming_synthesize,
                    request_deserializer=tts.StreamingSynthesizeRequest.deserialize,
                    response_serializer=tts.StreamingSynthesizeResponse.serialize,
                ),
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self.synthesize_speech,
                    request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                    response_serializer=tts.SynthesizeSpeechResponse.serialize,
                ),
            },
        )


class GoogleTTSServer:
    """The gRPC server on 127.0.0.1 (its own port: gRPC is HTTP/2 over TLS, the other fakes HTTP/1.1)."""

    def __init__(self, state: FakeState) -> None:
        self.stopping = asyncio.Event()
        self.service = GoogleTTSService(state, self.stopping)
        self.tls_key, self.tls_cert = self_signed_tls()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> None:
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self.service.handler(),))
        creds = grpc.ssl_server_credentials([(self.tls_key, self.tls_cert)])
        self.port = self._server.add_secure_port(f"{host}:0", creds)
        await self._server.start()

    async def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    def issue(self, *, token_uri: str) -> dict[str, Any]:
        account = issue_service_account(token_uri=token_uri)
        self.service.register(account)
        return account.info
