"""Every public gRPC call is authenticated (``authorization: Bearer TOKEN`` metadata) and checked
against the role its method needs; the servicers read the caller from
``hodei.api.principal``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from hodei.api.grpc.errors import abort_with
from hodei.api.principal import set_principal
from hodei.domain.auth import Principal, Role
from hodei.domain.errors import HodeiError
from hodei.services.auth import Authenticator

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]  # generic only in the type stubs

# Services that authenticate otherwise (workers: one-time token and session) or not at all.
_PUBLIC_PREFIXES = ("/grpc.health.", "/grpc.reflection.", "/hodei.v1.WorkerAgentService/")
_ROLES: dict[str, Role] = {
    "/hodei.v1.JobExecutionService/QueueJob": Role.OPERATOR,
    "/hodei.v1.JobExecutionService/CancelJob": Role.OPERATOR,
    "/hodei.v1.JobExecutionService/GetJob": Role.VIEWER,
    "/hodei.v1.JobExecutionService/ListJobs": Role.VIEWER,
    "/hodei.v1.JobExecutionService/WatchJob": Role.VIEWER,
    "/hodei.v1.LogStreamService/GetLogs": Role.VIEWER,
    "/hodei.v1.LogStreamService/SubscribeLogs": Role.VIEWER,
    "/hodei.v1.SchedulerService/GetQueueStatus": Role.VIEWER,
    "/hodei.v1.SchedulerService/ListWorkers": Role.VIEWER,
    "/hodei.v1.ProviderManagementService/ListProviders": Role.VIEWER,
    "/hodei.v1.ProviderManagementService/GetProvider": Role.VIEWER,
}
_SUBMITS = frozenset({"/hodei.v1.JobExecutionService/QueueJob"})


def required_role(method: str) -> Role | None:
    """The role a method needs; None for the public ones. Anything not listed needs admin."""
    if method.startswith(_PUBLIC_PREFIXES):
        return None
    return _ROLES.get(method, Role.ADMIN)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call before its handler runs; refusals are UNAUTHENTICATED or
    PERMISSION_DENIED (or RESOURCE_EXHAUSTED for a submission over the caller's rate) with a
    one-line reason."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        role = required_role(method)
        if handler is None or role is None:
            return handler
        return _guarded(handler, self._admit(method, role))

    def _admit(self, method: str, role: Role) -> Callable[[Context], Awaitable[Principal]]:
        action = method.rsplit("/", 1)[-1]

        async def admit(context: Context) -> Principal:
            header = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    header = value if isinstance(value, str) else value.decode()
            try:
                principal = await self._auth.authenticate(header)
                principal.require(role, action)
                if method in _SUBMITS:
                    self._auth.check_submit_rate(principal)
            except HodeiError as error:
                await abort_with(context, error)
            return principal

        return admit


def _guarded(handler: Handler, admit: Callable[[Context], Awaitable[Principal]]) -> Handler:
    """The same handler, run only for an admitted caller, who is its current principal."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            set_principal(await admit(context))
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            set_principal(await admit(context))
            async for response in inner_us(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: Any, context: Context) -> Any:
            set_principal(await admit(context))
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss: Any = handler.stream_stream

    async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
        set_principal(await admit(context))
        async for response in inner_ss(requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
