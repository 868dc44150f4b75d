"""REST for providers: the same operations as ProviderManagementService."""

from __future__ import annotations

from fastapi import APIRouter, Response

from hodei.api.http.models import Problem, ProviderIn, ProviderOut
from hodei.api.principal import current_actor
from hodei.domain.errors import storable
from hodei.services.registry import Services

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such provider"},
    409: {"model": Problem, "description": "A provider of that name exists"},
    503: {"model": Problem, "description": "PostgreSQL is unavailable"},
}


def provider_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/v1/providers", tags=["providers"], responses=_ERRORS)
    providers = services.providers

    @router.get("")
    async def list_providers() -> list[ProviderOut]:
        """Every provider with its live workers."""
        return [ProviderOut.from_view(view) for view in await providers.list()]

    @router.get("/{name}")
    async def get_provider(name: str) -> ProviderOut:
        return ProviderOut.from_view(await providers.get(storable("name", name)))

    @router.post("", status_code=201)
    async def create_provider(body: ProviderIn) -> ProviderOut:
        """Add a provider (audited: ProviderCreated)."""
        return ProviderOut.from_view(await providers.create(body.model_dump(), current_actor()))

    @router.put("/{name}")
    async def update_provider(name: str, body: ProviderIn) -> ProviderOut:
        """Change a provider's settings (audited: ProviderUpdated). The name cannot change."""
        view = await providers.update(storable("name", name), body.model_dump(), current_actor())
        return ProviderOut.from_view(view)

    @router.post("/{name}/enable")
    async def enable_provider(name: str) -> ProviderOut:
        """Enable it: it starts its workers (audited: ProviderEnabled)."""
        return ProviderOut.from_view(
            await providers.set_enabled(storable("name", name), True, current_actor())
        )

    @router.post("/{name}/disable")
    async def disable_provider(name: str) -> ProviderOut:
        """Disable it: it stops its workers (audited: ProviderDisabled)."""
        return ProviderOut.from_view(
            await providers.set_enabled(storable("name", name), False, current_actor())
        )

    @router.delete("/{name}", status_code=204)
    async def delete_provider(name: str) -> Response:
        """Remove it (audited: ProviderDeleted)."""
        await providers.delete(storable("name", name), current_actor())
        return Response(status_code=204)

    return router
