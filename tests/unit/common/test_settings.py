from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.common.settings import ServerSettings, SettingsError, env_field, from_env


@dataclass(frozen=True)
class Example:
    server: ServerSettings = field(default_factory=lambda: ServerSettings(grpc_port=1234))
    name: str = "default"
    workers: int = env_field("EXAMPLE_WORKERS_LEGACY", 1)
    ratio: float = 0.5
    enabled: bool = False
    root: Path = Path("models")
    hosts: tuple[str, ...] = ()
    limit: int | None = None


def test_defaults_apply_when_the_environment_is_empty():
    settings = from_env(Example, "EX", {})
    assert settings == Example()
    assert settings.server.grpc_port == 1234


def test_prefixed_and_explicit_names_are_read_and_typed():
    settings = from_env(
        Example,
        "EX",
        {
            "EX_NAME": "x",
            "EXAMPLE_WORKERS_LEGACY": "4",
            "EX_RATIO": "0.25",
            "EX_ENABLED": "yes",
            "EX_ROOT": "/srv/models",
            "EX_HOSTS": "a, b,,c",
            "EX_LIMIT": "7",
            "EX_GRPC_PORT": "5555",
            "LOG_LEVEL": "debug",
        },
    )
    assert settings.name == "x"
    assert settings.workers == 4
    assert settings.ratio == 0.25
    assert settings.enabled is True
    assert settings.root == Path("/srv/models")
    assert settings.hosts == ("a", "b", "c")
    assert settings.limit == 7
    assert settings.server.grpc_port == 5555
    assert settings.server.log_level == "debug"


def test_prefixed_name_is_ignored_when_an_explicit_name_is_declared():
    assert from_env(Example, "EX", {"EX_WORKERS": "9"}).workers == 1


def test_empty_optional_means_none():
    assert from_env(Example, "EX", {"EX_LIMIT": ""}).limit is None


@pytest.mark.parametrize(
    "variable, value, fragment",
    [
        ("EXAMPLE_WORKERS_LEGACY", "four", "EXAMPLE_WORKERS_LEGACY='four': expected int"),
        ("EX_ENABLED", "maybe", "expected true or false"),
        ("EX_RATIO", "1/2", "expected float"),
        ("EX_GRPC_PORT", "70000", "not a TCP port"),
        ("LOG_FORMAT", "xml", "expected json or text"),
    ],
)
def test_bad_values_name_the_variable(variable, value, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")):
        from_env(Example, "EX", {variable: value})
