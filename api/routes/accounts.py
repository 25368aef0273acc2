"""/api/v1/auth/login: local accounts log in for a token from the embedded issuer."""

from __future__ import annotations

from ..errors import NotFound, RateLimited, Unauthorized
from ..keys import ISSUER, SETTINGS, STORE
from ..ratelimit import LOGIN_PATH, client_address
from ..routing import RequestContext, Route
from ..schemas.accounts import LoginRequest, LoginToken
from ..services import accounts as service

WRONG_CREDENTIALS = "wrong email or password"


async def login(ctx: RequestContext) -> dict:
    app = ctx.request.app
    issuer = app.get(ISSUER)
    if issuer is None:
        # With Clerk configured there are no local accounts: the route is not here, and says why.
        raise NotFound(
            "local login is off: this server accepts Clerk tokens (VOXARENA_CLERK_ISSUER), log in through Clerk"
        )
    ttl = app[SETTINGS].login_token_ttl_seconds
    try:
        token = await service.login(
            app[STORE],
            issuer,
            app[service.LOGIN_THROTTLE],
            email=ctx.body.email,
            password=ctx.body.password,
            address=client_address(ctx.request),
            ttl_seconds=ttl,
        )
    except service.InvalidCredentials:
        raise Unauthorized(WRONG_CREDENTIALS) from None
    except service.TooManyFailures as e:
        raise RateLimited(str(e), retry_after=e.retry_after_seconds) from None
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl}


ROUTES = [
    Route(
        "POST",
        LOGIN_PATH,
        login,
        "Log in with a local account (embedded issuer only)",
        "auth",
        response=LoginToken,
        body=LoginRequest,
        public=True,
        errors=(401, 404, 429),
    ),
]
