"""Typed settings read once from the environment.

Each service declares a frozen dataclass. A field is read from
``<PREFIX>_<FIELD NAME>`` unless its metadata names the variable outright
(``env_field("RVC_WORKERS", 1)``), which keeps the old server's names.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def env_field(name: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name`` exactly."""
    return dataclasses.field(default=default, metadata={"env": name}, **kwargs)


def _parse(raw: str, kind: Any, var: str) -> Any:
    if kind is bool:
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(f"{var}={raw!r}: expected true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r}: expected {kind.__name__}") from None
    if kind is Path:
        return Path(raw).expanduser()
    if kind is str:
        return raw
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        (item,) = set(typing.get_args(kind)) - {Ellipsis}
        return tuple(_parse(part.strip(), item, var) for part in raw.split(",") if part.strip())
    raise TypeError(f"no parser for settings type {kind!r}")


def _optional_inner(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def from_env(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from ``environ`` (default ``os.environ``), validating every value.

    A field that is itself a settings dataclass is read with the same prefix,
    starting from the field's default instance.
    """
    return _read(cls, prefix, os.environ if environ is None else environ, None)


def _read(cls: type[T], prefix: str, environ: Mapping[str, str], base: T | None) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            values[field.name] = _read(kind, prefix, environ, _default(field))
            continue
        var = field.metadata.get("env") or f"{prefix}_{field.name}".upper()
        if var not in environ:
            continue
        inner = _optional_inner(kind)
        raw = environ[var]
        if inner is not None:
            values[field.name] = None if raw == "" else _parse(raw, inner, var)
        else:
            values[field.name] = _parse(raw, kind, var)
    settings = dataclasses.replace(base, **values) if base is not None else cls(**values)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()
    return settings


def check_port(name: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise SettingsError(f"{name}={port}: not a TCP port")


TLS_VARIABLES = ("INTERNAL_TLS_CERT", "INTERNAL_TLS_KEY", "INTERNAL_TLS_CA")


@dataclasses.dataclass(frozen=True)
class InternalTls:
    """Mutual TLS between the internal services: on when all three PEM files are
    given, off when none is (services/common/internal_tls.py builds the credentials)."""

    cert: Path | None = env_field("INTERNAL_TLS_CERT", None)
    key: Path | None = env_field("INTERNAL_TLS_KEY", None)
    ca: Path | None = env_field("INTERNAL_TLS_CA", None)

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    def validate(self) -> None:
        paths = dict(zip(TLS_VARIABLES, (self.cert, self.key, self.ca), strict=True))
        missing = [var for var, path in paths.items() if path is None]
        if missing and len(missing) != len(TLS_VARIABLES):
            raise SettingsError(f"internal mTLS needs all of {', '.join(TLS_VARIABLES)}: "
                                f"{', '.join(missing)} unset")
        for var, path in paths.items():
            if path is None:
                continue
            if not path.is_file():
                raise SettingsError(f"{var}={path}: no such file")
            if b"-----BEGIN" not in path.read_bytes():
                raise SettingsError(f"{var}={path}: not a PEM file")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every gRPC service needs to listen, report and stop."""

    host: str = "127.0.0.1"
    grpc_port: int = 0
    metrics_port: int = 0
    drain_seconds: float = 20.0
    # Working calls one instance runs at once (0: no limit), and how many more may
    # wait for a slot; beyond that a call is refused with RESOURCE_EXHAUSTED and a
    # retry-after of retry_after_seconds. Health, status and listings are never held.
    max_concurrent_streams: int = 64
    max_queued_streams: int = 64
    retry_after_seconds: float = 1.0
    # The deadline of a call that sets none, and the longest one a caller may set
    # (a longer one is shortened to it). Downstream calls inherit what is left.
    default_deadline_seconds: float = 300.0
    max_deadline_seconds: float = 3600.0
    # Largest message in either direction (a whole clip travels in one).
    max_message_bytes: int = 64 * 1024 * 1024
    log_level: str = env_field("LOG_LEVEL", "INFO")
    log_format: str = env_field("LOG_FORMAT", "json")
    # Off unless INTERNAL_TLS_CERT, _KEY and _CA are set (the same for every service).
    internal_tls: InternalTls = dataclasses.field(default_factory=InternalTls)

    def validate(self) -> None:
        check_port("grpc_port", self.grpc_port)
        check_port("metrics_port", self.metrics_port)
        if self.drain_seconds < 0:
            raise SettingsError(f"drain_seconds={self.drain_seconds}: must be >= 0")
        if not 0 <= self.max_concurrent_streams <= 100_000:
            raise SettingsError(
                f"max_concurrent_streams={self.max_concurrent_streams}: expected 0..100000")
        if not 0 <= self.max_queued_streams <= 100_000:
            raise SettingsError(f"max_queued_streams={self.max_queued_streams}: expected 0..100000")
        if not 0 < self.retry_after_seconds <= 3600:
            raise SettingsError(f"retry_after_seconds={self.retry_after_seconds}: expected (0, 3600]")
        if not 0 < self.default_deadline_seconds <= self.max_deadline_seconds:
            raise SettingsError(
                f"default_deadline_seconds={self.default_deadline_seconds}: expected > 0 and "
                f"<= max_deadline_seconds ({self.max_deadline_seconds})")
        if not 1024 <= self.max_message_bytes <= 2**31 - 1:
            raise SettingsError(f"max_message_bytes={self.max_message_bytes}: expected 1024..2^31-1")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"LOG_FORMAT={self.log_format!r}: expected json or text")

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"
