"""ProviderManagementService: the gRPC face of provider management."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from hodei.api.grpc import convert
from hodei.api.grpc.errors import unary
from hodei.api.grpc.servicers import Context
from hodei.api.principal import current_actor
from hodei.services.providers import ProviderService, ProviderView
from hodei.v1 import providers_pb2, providers_pb2_grpc


def provider_to_proto(view: ProviderView) -> providers_pb2.Provider:
    config, counts = view.stored.config, view.workers
    settings = struct_pb2.Struct()
    settings.update(dict(config.config))
    return providers_pb2.Provider(
        id=config.id,
        name=config.name,
        type=config.type.value,
        enabled=config.enabled,
        priority=config.priority,
        min_workers=config.min_workers,
        max_workers=config.max_workers,
        idle_timeout_s=int(config.idle_timeout.total_seconds()),
        config=settings,
        workers=providers_pb2.ProviderWorkers(
            total=counts.total, ready=counts.ready, busy=counts.busy
        ),
        created_at=convert.timestamp(view.stored.created_at),
        updated_at=convert.timestamp(view.stored.updated_at),
    )


def provider_from_proto(provider: providers_pb2.Provider) -> dict[str, Any]:
    """The API form ``parse_provider`` checks (proto3 has no "unset" for numbers: a request
    carries every setting)."""
    config = json_format.MessageToDict(provider.config) if provider.HasField("config") else {}
    # Struct numbers are floats: whole ones go back to integers.
    config = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in config.items()
    }
    return {
        "name": provider.name,
        "type": provider.type,
        "enabled": provider.enabled,
        "priority": provider.priority,
        "min_workers": provider.min_workers,
        "max_workers": provider.max_workers,
        "idle_timeout_s": provider.idle_timeout_s,
        "config": config,
    }


class ProviderManagementServicer(providers_pb2_grpc.ProviderManagementServiceServicer):
    def __init__(self, providers: ProviderService) -> None:
        self._providers = providers

    @unary
    async def ListProviders(
        self, request: providers_pb2.ListProvidersRequest, context: Context
    ) -> providers_pb2.ListProvidersResponse:
        views = await self._providers.list()
        return providers_pb2.ListProvidersResponse(providers=[provider_to_proto(v) for v in views])

    @unary
    async def GetProvider(
        self, request: providers_pb2.GetProviderRequest, context: Context
    ) -> providers_pb2.Provider:
        return provider_to_proto(await self._providers.get(request.name))

    @unary
    async def CreateProvider(
        self, request: providers_pb2.CreateProviderRequest, context: Context
    ) -> providers_pb2.Provider:
        raw = provider_from_proto(request.provider)
        return provider_to_proto(await self._providers.create(raw, current_actor()))

    @unary
    async def UpdateProvider(
        self, request: providers_pb2.UpdateProviderRequest, context: Context
    ) -> providers_pb2.Provider:
        raw = provider_from_proto(request.provider)
        raw["name"] = raw["name"] or request.name
        return provider_to_proto(await self._providers.update(request.name, raw, current_actor()))

    @unary
    async def EnableProvider(
        self, request: providers_pb2.SetProviderEnabledRequest, context: Context
    ) -> providers_pb2.Provider:
        view = await self._providers.set_enabled(request.name, True, current_actor())
        return provider_to_proto(view)

    @unary
    async def DisableProvider(
        self, request: providers_pb2.SetProviderEnabledRequest, context: Context
    ) -> providers_pb2.Provider:
        view = await self._providers.set_enabled(request.name, False, current_actor())
        return provider_to_proto(view)

    @unary
    async def DeleteProvider(
        self, request: providers_pb2.DeleteProviderRequest, context: Context
    ) -> providers_pb2.DeleteProviderResponse:
        await self._providers.delete(request.name, current_actor())
        return providers_pb2.DeleteProviderResponse()
