"""The client's own requirements pin what the service's requirements pin: one version of each."""

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def pins(path):
    lines = (l.split("#")[0].strip() for l in path.read_text().splitlines())
    return dict(l.split("==") for l in lines if "==" in l)


def test_client_pins_match_the_service_pins():
    client = pins(PROJECT / "efsml_client" / "requirements.txt")
    service = pins(PROJECT / "requirements.txt") | pins(PROJECT / "requirements-dev.txt")
    assert set(client) == {"requests", "numpy", "tqdm"}
    assert {name: service.get(name) for name in client} == client
