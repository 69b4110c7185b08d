"""DeepBrain AI Studios v3 client: create and export renders, follow their progress, fetch the output.

Every API call sends the account's token raw in ``Authorization`` (no "Bearer"), through
``tokens.TokenAuth``: a 401 gets one token refresh and one retry. Answers go through ``api.unwrap``.
Responses parse leniently: a new field never fails a job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.providers.aistudios.api import ENDPOINTS, PROVIDER, error_code, unwrap
from worker.providers.aistudios.tokens import SharedToken, TokenAuth, TokenSource
from worker.providers.errors import ProviderUnavailable
from worker.providers.http import (
    ByteBudget,
    Download,
    make_http_client,
    send_with_connect_retry,
    snippet,
    stream_to_file,
)

if TYPE_CHECKING:
    import redis

    from worker.providers.aistudios.settings import AIStudiosSettings

RESOLUTIONS: Final = frozenset({"4k", "1080", "720", "480"})

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True, frozen=True)


class Progress(_Lenient):
    """``GET .../editor/progress/{projectId}``: percent done and, at 100, the download URL."""

    progress: float = 0.0
    download_url: str | None = Field(
        None, alias="downloadUrl", validation_alias=AliasChoices("downloadUrl", "download_url")
    )
    state: str | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @property
    def done(self) -> bool:
        """Rendered: the documented end is progress 100 with a download URL (reference 2.6)."""
        return self.progress >= 100 and bool(self.download_url)


class Project(_Lenient):
    """``data.project`` of ``GET .../editor/project/{id}``; ``state`` is ``"exported"`` once rendered."""

    id: str = Field(alias="_id", validation_alias=AliasChoices("_id", "id"))
    name: str | None = None
    state: str | None = None
    progress: float | None = None
    download_url: str | None = Field(
        None, alias="download_url", validation_alias=AliasChoices("download_url", "downloadUrl")
    )
    backend_task_id: str | None = Field(None, alias="backendTaskId")
    credit_subtracted: bool | None = Field(None, alias="creditSubstracted")  # sic, on the wire


class Label(_Lenient):
    ko: str | None = None
    en: str | None = None


class Clothes(_Lenient):
    id: str
    label: Label | None = None
    thumbnail: str | None = None


class AvatarModel(_Lenient):
    """One avatar of ``GET /api/odin/v3/model``; an outfit id goes into a clip's ``model.emotion``."""

    id: str
    label: Label | None = None
    thumbnail: str | None = None
    clothes: list[Clothes] = []


class _ProjectData(_Lenient):
    project: Project


class _ModelsData(_Lenient):
    models: list[AvatarModel] = []


class _Ref(_Lenient):
    project_id: str = Field(alias="projectId")


class _Deleted(_Lenient):
    deleted_count: int = Field(0, alias="deletedCount")


class AIStudiosClient:
    """Typed calls to the AI Studios v3 API over an injected ``httpx.Client`` (base URL and timeouts
    set) and a ``TokenSource``. Only fast connection failures are retried here, and a 401 once."""

    def __init__(self, http: httpx.Client, tokens: TokenSource, *, workspace_id: str | None = None) -> None:
        self._http = http
        # Per call, not on ``http``: downloads go through the same client and must carry no token.
        self._auth = TokenAuth(tokens)
        self.workspace_id = workspace_id
        self.provider = PROVIDER

    @classmethod
    def from_settings(cls, settings: AIStudiosSettings, redis_client: redis.Redis) -> Self:
        """A client for ``settings.url`` whose token is shared through ``redis_client``."""
        http = make_http_client(
            settings.url,
            connect_timeout_s=settings.http.connect_timeout_s,
            read_timeout_s=settings.http.read_timeout_s,
            headers={"accept": "application/json", "user-agent": "genq"},
            provider=PROVIDER,
            error_code=error_code,
        )
        tokens = SharedToken.from_settings(settings, redis_client, http)
        return cls(http, tokens, workspace_id=settings.workspace_id)

    def close(self) -> None:
        """Close the underlying HTTP client and its connections."""
        self._http.close()

    def create_project(
        self,
        project: Mapping[str, Any],
        *,
        export: bool,
        resolution: str | None = None,
        webhook_url: str | None = None,
        workspace_id: str | None = None,
    ) -> str:
        """``POST .../editor/project``: create a project from its JSON (reference 2.5) and, with
        ``export``, render it. Returns the ``projectId``. Not idempotent: a retry may render twice."""
        body = {**project, "isExport": export, **self._render_options(resolution, webhook_url, workspace_id)}
        return self._parse("create", self._call("create", body=body), _Ref).project_id

    def export(
        self,
        project_id: str,
        *,
        resolution: str | None = None,
        webhook_url: str | None = None,
        workspace_id: str | None = None,
    ) -> str:
        """``POST .../editor/project/export``: render an existing project; returns its ``projectId``."""
        body = {"projectId": project_id, **self._render_options(resolution, webhook_url, workspace_id)}
        data = self._call("export", body=body)
        # The id is known already: an answer without it must not turn a started render into a retry.
        return str(data["projectId"]) if isinstance(data, dict) and data.get("projectId") else project_id

    def progress(self, project_id: str) -> Progress:
        """``GET .../editor/progress/{id}``; ``success: false`` here is a failed render (``JobRejected``)."""
        return self._parse("progress", self._call("progress", project_id=project_id), Progress)

    def get_project(self, project_id: str) -> Project:
        """``GET .../editor/project/{id}``; an unknown id raises ``NotFound`` (or ``BadRequest``)."""
        return self._parse("project", self._call("project", project_id=project_id), _ProjectData).project

    def delete_projects(self, ids: Sequence[str]) -> int:
        """``DELETE .../editor/project`` with ``{"ids": [...]}``; returns ``deletedCount``."""
        if not ids:
            return 0
        return self._parse("delete", self._call("delete", body={"ids": list(ids)}), _Deleted).deleted_count

    def models(self) -> list[AvatarModel]:
        """``GET /api/odin/v3/model``: the avatar catalogue with each avatar's outfits."""
        return self._parse("models", self._call("models"), _ModelsData).models

    def download(self, url: str, dest: Path, *, max_bytes: int, budget: ByteBudget | None = None) -> Download:
        """Stream a render's ``download_url`` to ``dest`` atomically; no token goes to the storage host."""
        return stream_to_file(
            self._http, url, dest, max_bytes=max_bytes, provider=self.provider, budget=budget
        )

    def _render_options(
        self, resolution: str | None, webhook_url: str | None, workspace_id: str | None
    ) -> dict[str, str]:
        if resolution is not None and resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, not {resolution!r}")
        options = {"resolution": resolution, "webhookUrl": webhook_url}
        options["workspaceId"] = workspace_id or self.workspace_id
        return {key: value for key, value in options.items() if value}

    def _call(self, name: str, *, project_id: str = "", body: dict[str, Any] | None = None) -> Any:
        method, template = ENDPOINTS[name]
        if "{project_id}" in template and not project_id:
            raise ValueError("project_id is empty")
        path = template.format(project_id=quote(project_id, safe=""))
        request = self._http.build_request(
            method, path, json=body, headers={"Content-Type": "application/json"}
        )
        response = send_with_connect_retry(self._http, request, auth=self._auth, provider=self.provider)
        # The token the answer may echo is scrubbed with the request's Authorization header, and so is the
        # per-job token of a webhook URL sent (``ProviderError`` also scrubs any ``token=`` it quotes).
        webhook = str((body or {}).get("webhookUrl") or "")
        secrets = parse_qs(urlsplit(webhook).query).get("token", [])
        return unwrap(response, render_status=name == "progress", secrets=secrets)

    def _parse(self, name: str, data: Any, model: type[_ModelT]) -> _ModelT:
        # A 2xx we cannot read is the provider misbehaving, not our request being wrong: retry later.
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            detail = snippet(str(exc.errors(include_url=False, include_input=False)))
            message = "unreadable {} {} data: ".format(*ENDPOINTS[name]) + detail
            raise ProviderUnavailable(message, provider=self.provider) from None
