"""Configuration: a TOML file plus `CBEMBED_*` environment variables (pydantic-settings).

Precedence, highest first: keyword arguments, environment (`CBEMBED_STORAGE`,
`CBEMBED_COUCHBASE__PASSWORD`, ...), the TOML file, defaults. Secrets never have to be in the file.

    storage = "embedded://./cbembed.db"          # or couchbase://host (see [couchbase])
    [[pipelines]]
    name = "articles"
    keyspace = "demo.library.articles"
    template = "{title}. {body}"
    filter = { type = "article" }
    vector_field = "embedding"
    similarity = "cosine"
    encoder = { kind = "sentence-transformers", model = "sentence-transformers/all-MiniLM-L6-v2" }

`load_settings()` turns every validation problem into one `ConfigError` line: path + reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connector.errors import ConfigError
from connector.events import Keyspace
from connector.filters import FieldFilter
from connector.template import Template

Similarity = Literal["cosine", "dot", "l2"]
DEFAULT_CONFIG_NAME = "cbembed.toml"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")


class EncoderConfig(BaseModel):
    """Which encoder a pipeline uses. `kind` names an installed encoder (entry point
    group `cbembed.encoders`); `options` are passed to it and validated by it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "sentence-transformers"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    device: str = "auto"
    batch_size: int = Field(default=32, ge=1, le=4096)
    options: dict[str, Any] = Field(default_factory=dict)


SourceKind = Literal["auto", "path", "url", "base64", "document"]


class SourceConfig(BaseModel):
    """Where a pipeline's image or audio comes from (see docs/images-and-audio.md).

    `kind`: `path` (a file path or file:// URI in `source_field`, read only under `root`),
    `url` (http/https), `base64` (the bytes, or a data: URI, in the field), `document` (the
    binary document itself; no `source_field`), or `auto` (decided per value: a URL, a data:
    URI or long base64 text, else a path, which needs `root`).
    """

    model_config = ConfigDict(extra="forbid")

    kind: SourceKind = "auto"
    root: Path | None = Field(
        default=None, description="folder that paths are read under; nothing outside it is read"
    )
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="largest source read")
    max_pixels: int = Field(default=50_000_000, ge=1, description="largest decoded image")
    timeout_s: float = Field(default=10.0, gt=0, description="per HTTP attempt")
    retries: int = Field(default=2, ge=0, le=10, description="HTTP retries after the first try")
    allowed_content_types: list[str] | None = Field(
        default=None, description="HTTP content types accepted (`image/*` style patterns); "
        "default: the encoder's modality, e.g. image/* (and application/octet-stream)",
    )

    @model_validator(mode="after")
    def _root_ok(self) -> SourceConfig:
        if self.kind == "path" and self.root is None:
            raise ValueError("kind 'path' needs a `root` folder (nothing outside it is read)")
        if self.root is not None:
            self.root = self.root.expanduser()
        return self


_INDEX_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,95}$")
_IVF_RE = re.compile(r"^IVF\d*,(SQ[468]|PQ\d+x\d+)$", re.IGNORECASE)
IndexFieldKind = Literal["keyword", "text", "number", "boolean"]


class IndexConfig(BaseModel):
    """Vector indexes of a pipeline on Couchbase (`cbembed index plan|apply|check`); see
    index_defs/ and docs/couchbase-search.md. Unused on the embedded store."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, description="base index name; default cbembed_<pipeline> ('-' -> '_')"
    )
    search: bool = Field(default=True, description="a Search-service index (vector + text)")
    gsi: Literal["hyperscale", "composite", "none"] = Field(
        default="hyperscale", description="a Query-service vector index (Server 8.0+)"
    )
    optimized_for: Literal["recall", "latency"] = "recall"
    text_fields: list[str] | None = Field(
        default=None, description="fields for keyword search; default: the template's fields"
    )
    filter_fields: dict[str, IndexFieldKind] = Field(
        default_factory=dict,
        description="extra pre-filter fields and their kinds; the pipeline filter's fields are "
        "always added",
    )
    description: str = Field(default="IVF,SQ8", description="GSI centroids and quantization")
    nprobes: int | None = Field(default=None, ge=1, description="GSI scan_nprobes")
    train_list: int | None = Field(default=None, ge=1, description="GSI train_list")
    min_docs_to_build: int = Field(
        default=1000, ge=1, description="build a deferred GSI vector index from this many docs"
    )

    @field_validator("name")
    @classmethod
    def _index_name_ok(cls, v: str | None) -> str | None:
        if v is not None and not _INDEX_NAME_RE.match(v):
            raise ValueError("must start with a letter and hold only letters, digits or '_'")
        return v

    @field_validator("description")
    @classmethod
    def _description_ok(cls, v: str) -> str:
        if not _IVF_RE.match(v.strip()):
            raise ValueError(
                "must look like IVF[nlist],SQ4|SQ6|SQ8|PQ<m>x<bits>, e.g. IVF,SQ8 or IVF1024,PQ8x8"
            )
        return v.strip()


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    keyspace: str
    template: str | None = None
    source_field: str | None = Field(
        default=None, description="field holding an image/audio source (non-text encoders)"
    )
    source: SourceConfig | None = Field(
        default=None, description="how `source_field` is read (default: kind auto, no root)"
    )
    filter: FieldFilter | None = None
    vector_field: str = "embedding"
    similarity: Similarity = "cosine"
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                "must start with a letter and hold only letters, digits, '_' or '-' (max 63)"
            )
        return v

    @field_validator("keyspace")
    @classmethod
    def _keyspace_ok(cls, v: str) -> str:
        Keyspace.parse(v)
        return v

    @field_validator("template")
    @classmethod
    def _template_ok(cls, v: str | None) -> str | None:
        if v is not None:
            Template.parse(v)
        return v

    @field_validator("vector_field")
    @classmethod
    def _vector_field_ok(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", v):
            raise ValueError("must be a field name or a dotted path of field names")
        return v

    @property
    def parsed_keyspace(self) -> Keyspace:
        return Keyspace.parse(self.keyspace)

    @model_validator(mode="after")
    def _has_input(self) -> PipelineConfig:
        if self.source is not None and self.source.kind == "document":
            if (self.source_field, self.template, self.filter) != (None, None, None):
                raise ValueError("source kind 'document' embeds the whole (binary) document: "
                                 "it takes no `source_field`, `template` or `filter`")
            return self
        if self.template is None and self.source_field is None:
            raise ValueError("needs a `template` (text) or a `source_field` (image/audio)")
        if self.source is not None and self.source_field is None:
            raise ValueError("`source` says how to read `source_field`: set `source_field`")
        return self


class ConnectorConfig(BaseModel):
    """How the connector runs: batching, queues, checkpoints, scale-out."""

    model_config = ConfigDict(extra="forbid")

    group: str = "default"
    member: int = Field(default=0, ge=0)
    members: int = Field(default=1, ge=1, le=1024)
    max_batch: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=50.0, ge=0)
    queue_size: int = Field(default=1024, ge=1)
    checkpoint_interval_s: float = Field(default=1.0, gt=0)
    status_interval_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=0.2, gt=0)
    start_from: Literal["beginning", "now"] = "beginning"


class EmbeddedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=64, ge=1, le=1024)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


class CouchbaseConfig(BaseModel):
    """How to reach a Couchbase cluster (`storage = "couchbase://..."`). Roles needed: Data DCP
    Reader (stream), Data Writer (write-back, metadata); creating the metadata collection also
    needs Manage Scopes, or create it yourself."""

    model_config = ConfigDict(extra="forbid")

    username: str = "Administrator"
    password: SecretStr = SecretStr("")
    ca_cert: Path | None = None
    metadata_keyspace: str = Field(
        default="", description="bucket.scope.collection for checkpoints; default "
        "<first pipeline's bucket>.cbembed.meta (names may not start with '_')"
    )
    meta_xattr: str = Field(
        default="_cbembed",
        description="extended attribute holding each pipeline's source hash; a '_' name is a "
        "system xattr, which survives full-document writes by applications",
    )
    sasl_mechanism: Literal["SCRAM-SHA512", "SCRAM-SHA256", "SCRAM-SHA1", "PLAIN"] = (
        "SCRAM-SHA512"
    )
    dcp_buffer_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    dcp_noop_interval_s: float = Field(default=120, ge=1)
    write_concurrency: int = Field(default=32, ge=1, le=1024)
    timeout_s: float = Field(default=10, gt=0)

    @field_validator("metadata_keyspace")
    @classmethod
    def _meta_ok(cls, v: str) -> str:
        if v:
            ks = Keyspace.parse(v)
            if ks.scope.startswith(("_", "%")) or ks.collection.startswith(("_", "%")):
                raise ValueError("Couchbase scope and collection names may not start with _ or %")
        return v

    @field_validator("meta_xattr")
    @classmethod
    def _xattr_ok(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,15}$", v):
            raise ValueError("must be 1-16 letters, digits or '_' (an xattr key)")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CBEMBED_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    storage: str = "embedded://./cbembed.db"
    pipelines: list[PipelineConfig] = Field(default_factory=list)
    connector: ConnectorConfig = Field(default_factory=ConnectorConfig)
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    couchbase: CouchbaseConfig = Field(default_factory=CouchbaseConfig)

    @field_validator("storage")
    @classmethod
    def _storage_ok(cls, v: str) -> str:
        if not v.startswith(("embedded://", "couchbase://", "couchbases://")):
            raise ValueError(
                "must be embedded://PATH or a Couchbase connection string "
                "(couchbase://host or couchbases://host)"
            )
        if v.startswith("embedded://") and not v[len("embedded://") :]:
            raise ValueError("embedded:// needs a file path, e.g. embedded://./cbembed.db")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        seen: set[str] = set()
        for p in self.pipelines:
            if p.name in seen:
                raise ValueError(f"pipeline name {p.name!r} is used twice")
            seen.add(p.name)
            if p.source is not None and p.source.kind == "document" and not self.is_embedded:
                raise ValueError(
                    f"pipeline {p.name!r}: on Couchbase a binary document cannot hold its "
                    "vector (sub-document writes need JSON); keep the image in a JSON "
                    "document's field (base64, path or URL), or use the embedded store"
                )
        targets = [(p.keyspace, p.vector_field) for p in self.pipelines]
        for t in set(targets):
            if targets.count(t) > 1:
                raise ValueError(f"two pipelines write the same vector field {t[1]!r} of {t[0]}")
        if self.connector.member >= self.connector.members:
            raise ValueError(
                f"connector.member {self.connector.member} must be below "
                f"connector.members {self.connector.members}"
            )
        return self

    @property
    def is_embedded(self) -> bool:
        return self.storage.startswith("embedded://")

    @property
    def embedded_path(self) -> Path:
        return Path(self.storage[len("embedded://") :]).expanduser()

    def pipeline(self, name: str | None) -> PipelineConfig:
        if not self.pipelines:
            raise ConfigError([("pipelines", "no pipeline is configured")])
        if name is None:
            return self.pipelines[0]
        for p in self.pipelines:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.pipelines)
        raise ConfigError([("pipeline", f"no pipeline named {name!r} (configured: {known})")])


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append((path, msg))
    return out


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), the environment and `overrides`; raise ConfigError.

    Without an explicit file, `CBEMBED_CONFIG` and then `./cbembed.toml` are tried.
    """
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError([("--config", f"file {str(path)!r} does not exist")])
    elif os.environ.get("CBEMBED_CONFIG"):
        path = Path(os.environ["CBEMBED_CONFIG"])
        if not path.is_file():
            raise ConfigError([("CBEMBED_CONFIG", f"file {str(path)!r} does not exist")])
    elif Path(DEFAULT_CONFIG_NAME).is_file():
        path = Path(DEFAULT_CONFIG_NAME)
    source = str(path) if path else None
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([("(file)", f"not valid TOML: {e}")], source) from None

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        settings = _FileSettings(**overrides)
    except ValidationError as e:
        raise ConfigError(_problems(e), source) from None
    # Relative embedded paths are relative to the config file's folder.
    if path is not None and settings.is_embedded and not settings.embedded_path.is_absolute():
        rel = settings.storage[len("embedded://") :]
        if "CBEMBED_STORAGE" not in os.environ and "storage" not in overrides:
            settings.storage = "embedded://" + str((path.parent / rel).resolve())
    # So are relative source roots (pipelines.*.source.root).
    for pipe in settings.pipelines:
        src = pipe.source
        if path is not None and src is not None and src.root and not src.root.is_absolute():
            src.root = (path.parent / src.root).resolve()
    return settings
