"""The run form Prefect builds from the flows' signatures: Danish titles and help, the
municipality as a list, advanced switches marked, no field the UI draws as type "None"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.communicate_externally import communicate_externally
from flows.confirm_steps import confirm_steps
from flows.deployments import build_deployments
from flows.form import ADVANCED, given, known_configs
from flows.inform_channel import inform_channel
from flows.notify_leader import notify_leader
from tests.conftest import EXAMPLE_CONFIG, ROOT

LEADER_FIELDS = {"config_path", "audience", "channel"}


def _schema(flow: Any) -> dict[str, Any]:
    return flow.parameters.model_dump_for_openapi()


def _walk_types(node: Any) -> list[str]:
    """Every "type" named anywhere in a schema, anyOf branches included."""
    if isinstance(node, dict):
        found = [node["type"]] if isinstance(node.get("type"), str) else []
        return found + [t for v in node.values() for t in _walk_types(v)]
    if isinstance(node, list):
        return [t for v in node for t in _walk_types(v)]
    return []


@pytest.mark.parametrize("flow", [communicate_externally, inform_channel])
def test_every_field_has_a_danish_title_and_help(flow: Any) -> None:
    props = _schema(flow)["properties"]
    for name, prop in props.items():
        assert prop["title"] != name, name  # Prefect's own title is the parameter's name
        assert prop.get("description"), name
        advanced = prop["title"].startswith(ADVANCED)
        assert advanced == (name not in LEADER_FIELDS), (name, prop["title"])
    assert props["config_path"]["title"] == "Kommune"


@pytest.mark.parametrize("flow", [communicate_externally, inform_channel])
def test_no_field_is_drawn_as_type_none(flow: Any) -> None:
    schema = _schema(flow)
    assert "null" not in _walk_types(schema)
    # A field the form starts empty starts as "" or [], never None: the server refuses None
    # for a text or list field ("None is not of type 'string'").
    for name, prop in schema["properties"].items():
        assert prop.get("default", "") is not None, name


def test_the_municipality_is_chosen_from_the_known_configs() -> None:
    prop = _schema(communicate_externally)["properties"]["config_path"]
    assert prop["enum"] == known_configs()
    assert "config/municipalities/eksempel-kommune.yaml" in prop["enum"]
    assert all((ROOT / path).is_file() for path in prop["enum"])
    assert "config_path" in _schema(communicate_externally)["required"]


def test_serve_offers_the_served_config_and_its_neighbours(tmp_path: Path) -> None:
    config = tmp_path / "min-kommune.yaml"
    config.write_bytes(EXAMPLE_CONFIG.read_bytes())
    (tmp_path / "anden-kommune.yaml").write_bytes(EXAMPLE_CONFIG.read_bytes())
    deployments = build_deployments(str(config))
    offered = {
        d.name: d._parameter_openapi_schema.properties["config_path"]["enum"]
        for d in deployments
        if "config_path" in d._parameter_openapi_schema.properties
    }
    expected = [str(config), str(tmp_path / "anden-kommune.yaml")]
    assert {tuple(v) for v in offered.values()} == {tuple(expected)}
    assert any(d.name.startswith("bekraeft-trin-") for d in deployments)
    assert {f.name for f in (communicate_externally, inform_channel, confirm_steps)} <= {
        d.flow_name for d in deployments
    }
    (notice,) = [d for d in deployments if d.flow_name == notify_leader.name]
    assert "config_path" not in notice._parameter_openapi_schema.properties


@pytest.mark.parametrize(
    ("sent", "meant"),
    [("", None), ([], None), (None, None), ("x.csv", "x.csv"), (["sms"], ["sms"])],
)
def test_what_the_form_sends_for_empty_is_not_given(sent: Any, meant: Any) -> None:
    assert given(sent) == meant
