"""Domain errors to gRPC status codes: the one place that decides the mapping."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from hodei.domain.auth import PermissionDeniedError, RateLimitedError
from hodei.domain.errors import (
    AuthenticationError,
    ConflictError,
    FailedPreconditionError,
    HodeiError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)

_CODES: list[tuple[type[HodeiError], grpc.StatusCode]] = [
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def status_for(error: HodeiError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: HodeiError) -> NoReturn:
    """End the call with the status that matches ``error`` and its message."""
    if isinstance(error, RateLimitedError):
        context.set_trailing_metadata((("retry-after", str(max(1, round(error.retry_after)))),))
    await context.abort(status_for(error), str(error))
    raise AssertionError("context.abort returned")  # pragma: no cover


T = TypeVar("T")


def unary(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    """Wrap a unary handler so a HodeiError becomes the matching status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await method(self, request, context)
        except HodeiError as error:
            await abort_with(context, error)

    return wrapper


def streaming(
    method: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Wrap a server-streaming handler so a HodeiError becomes the matching status."""
    assert inspect.isasyncgenfunction(method)

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[T]:
        try:
            async for item in method(self, request, context):
                yield item
        except HodeiError as error:
            await abort_with(context, error)

    return wrapper
