"""SNI experiment of the tls check: the same address handshaken with the target SNI, a control
SNI and no SNI, side by side — against a Python SNI filter in front of a real TLS server, and
against the kernel's own (iptables string match -> tcp-reset in a network namespace)."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import TlsCheck
from monitor.model import ProbeResult, utcnow
from monitor.probes import probe_tls, run_probe
from monitor.probes._sni import ResidualBlocking, sni_experiment
from monitor.vantage import Vantage
from tests.conftest import require
from tests.servers import tcp
from tests.servers.certs import CertFiles, TestCA
from tests.servers.sni_front import SniFilter
from tests.servers.sni_netns import lab_unavailable, sni_reset_lab
from tests.servers.tcp import TcpServer, server_context

BLOCKED, CONTROL = "blocked.example", "control.example"


class Clock:
    """A clock the test moves by hand, for the hold-off across runs."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("sni-pki"), name="sni test CA")


@pytest.fixture(scope="module")
def leaf(ca: TestCA) -> CertFiles:
    """The server has a certificate for the blocked name only, as a site on its own IP does:
    the control name then fails verification — after the ServerHello came back."""
    return ca.issue(BLOCKED, stem="blocked")


@pytest.fixture(scope="module")
def vantage(ca: TestCA) -> Vantage:
    return Vantage(name="local", extra_ca_files=(str(ca.path),))


@pytest.fixture
async def backend(serve, leaf) -> TcpServer:
    return await serve(TcpServer(tcp.hold_open, ssl_context=server_context(leaf)))


def check(port: int, **kw) -> TlsCheck:
    fields = dict(
        name="sni", kind="tls", target=f"{BLOCKED}:{port}", connect_to="127.0.0.1", control_sni=CONTROL,
        interval=60, timeout=3, tls_timeout=1, vantages=["local"],
    )
    return TlsCheck(**(fields | kw))


async def run(c: TlsCheck, vantage: Vantage, residual: ResidualBlocking, order=None):
    """The experiment; `order`: "target-first" or "none-first" after the control, else random."""
    deadline = time.monotonic() + c.timeout
    if order is None:
        return await probe_tls(c, vantage, deadline=deadline, residual=residual)
    shuffle = (lambda rest: None) if order == "target-first" else list.reverse
    return await sni_experiment(c, vantage, deadline=deadline, residual=residual, shuffle=shuffle)


def by_label(result) -> dict[str, dict]:
    return {o["label"]: o for o in result.facts["sni_experiment"]}


async def test_target_reset_while_control_completes_on_the_same_ip(serve, backend, vantage):
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    result = await run(check(front.port), vantage, ResidualBlocking())

    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == ("connection_reset", "tls_handshake")
    outcomes = result.facts["sni_experiment"]
    assert outcomes[0]["label"] == "control"  # always first
    assert {o["label"] for o in outcomes[1:]} == {"target", "none"}
    assert front.seen == [o["sni"] for o in outcomes]  # what the filter saw, in the order run

    o = by_label(result)
    assert o["target"] | {"ms_after_client_hello": None, "detail": None} == {
        "label": "target", "sni": BLOCKED, "skipped": None, "connected": True, "after_client_hello": True,
        "server_hello": False, "class": "connection_reset", "operation": "tls_handshake", "detail": None,
        "cert": None, "ms_after_client_hello": None, "contaminated": False, "trigger": True,
    }
    assert o["target"]["ms_after_client_hello"] >= 0
    control = o["control"]
    assert (control["connected"], control["server_hello"], control["after_client_hello"]) == (True, True, True)
    assert control["class"] == "ssl_invalid_hostname"  # the ServerHello and certificate came back
    assert control["cert"]["subject"] == f"CN={BLOCKED}" and control["cert"]["issuer"] == "CN=sni test CA"
    assert control["contaminated"] is False
    none = o["none"]
    assert (none["class"], none["server_hello"], none["sni"]) == (None, True, None)
    assert none["cert"]["sha256"] == control["cert"]["sha256"]  # same server, same certificate
    labels = [o["label"] for o in outcomes]
    assert none["contaminated"] == (labels.index("none") > labels.index("target"))  # ran after the trigger
    assert result.facts["sni"] == BLOCKED and result.facts["control_sni"] == CONTROL
    assert result.facts["ip"] == "127.0.0.1"


@pytest.mark.parametrize("order", ["target-first", "none-first"])
async def test_attempts_after_a_trigger_are_marked_contaminated(serve, backend, vantage, order):
    # This filter also resets every connection for a while after a trigger, as the GFW does.
    front = await serve(SniFilter(backend.port, {BLOCKED}, residual=5))
    result = await run(check(front.port), vantage, ResidualBlocking(), order)
    labels = [o["label"] for o in result.facts["sni_experiment"]]
    assert labels == ["control", "target", "none"] if order == "target-first" else ["control", "none", "target"]
    none = by_label(result)["none"]
    if order == "target-first":  # reset by the residual blocking, and marked as suspect
        assert (none["class"], none["contaminated"]) == ("connection_reset", True)
    else:
        assert (none["class"], none["server_hello"], none["contaminated"]) == (None, True, False)
    assert by_label(result)["control"]["contaminated"] is False


async def test_holdoff_keeps_the_control_off_a_triggered_address(serve, backend, vantage):
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    clock = Clock()
    residual = ResidualBlocking(clock)
    c = check(front.port, holdoff=180)
    await run(c, vantage, residual)  # triggers

    clock.now += 60
    held = await run(c, vantage, residual)
    control = by_label(held)["control"]
    assert control["skipped"] == {"reason": "residual_blocking_holdoff", "remaining_s": 120.0}
    assert (control["connected"], control["class"]) == (False, None)
    assert CONTROL not in front.seen[3:]  # nothing was sent for the control
    assert all(o["contaminated"] for o in held.facts["sni_experiment"] if o["skipped"] is None)
    assert held.failure.cls == "connection_reset"  # the target still decides the result

    clock.now += 181  # the second run triggered again at +60; its hold-off is over at +240
    clear = await run(c, vantage, residual)
    assert by_label(clear)["control"]["skipped"] is None
    assert by_label(clear)["control"]["contaminated"] is False


async def test_holdoff_is_per_vantage(serve, backend, vantage):
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    residual = ResidualBlocking()
    await run(check(front.port), vantage, residual)
    other = Vantage(name="elsewhere", extra_ca_files=vantage.extra_ca_files)
    assert by_label(await run(check(front.port), other, residual))["control"]["skipped"] is None


async def test_no_trigger_no_contamination(serve, backend, vantage):
    residual = ResidualBlocking()
    result = await run(check(backend.port, sni=BLOCKED), vantage, residual)
    assert result.ok, result.failure
    assert [o["contaminated"] for o in result.facts["sni_experiment"]] == [False, False, False]
    assert result.facts["verified"] is True and result.facts["subject"] == f"CN={BLOCKED}"
    assert set(result.phases) == {"connect", "tls"}  # the target attempt's
    again = await run(check(backend.port), vantage, residual)
    assert by_label(again)["control"]["skipped"] is None


async def test_a_dropped_target_does_not_starve_the_next_attempt(serve, backend, vantage):
    # The blocked ClientHello is swallowed; with no tls_timeout only the deadline bounds the
    # wait, and each attempt gets its own share of it.
    front = await serve(SniFilter(backend.port, {BLOCKED}, drop=True))
    result = await run(check(front.port, tls_timeout=None, timeout=1.5), vantage, ResidualBlocking(), "target-first")
    target, none = by_label(result)["target"], by_label(result)["none"]
    assert (target["class"], target["after_client_hello"], target["connected"]) == ("generic_timeout_error", True, True)
    assert (none["class"], none["server_hello"], none["contaminated"]) == (None, True, True)


async def test_runner_runs_the_experiment(serve, backend, vantage):
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    result = await run_probe(check(front.port, holdoff=0.001), vantage)  # the process-wide memory
    assert [o["label"] for o in result.facts["sni_experiment"]][0] == "control"
    assert result.failure.cls == "connection_reset"


async def test_sni_reset_by_iptables_in_a_namespace(leaf, vantage):
    reason = lab_unavailable()
    require(reason is None, reason or "")
    with sni_reset_lab(BLOCKED, leaf) as lab:
        result = await run(check(lab.port, connect_to=lab.server_ip), vantage, ResidualBlocking())
    o = by_label(result)
    assert (o["target"]["class"], o["target"]["after_client_hello"], o["target"]["connected"]) == ("connection_reset", True, True)
    assert (o["control"]["class"], o["control"]["server_hello"]) == ("ssl_invalid_hostname", True)
    assert o["none"]["server_hello"] is True and o["none"]["class"] is None
    assert result.facts["ip"] == lab.server_ip
    assert not Path(f"/run/netns/{lab.netns}").exists()


async def test_the_holdoff_carries_the_last_completed_control_forward(serve, backend, vantage):
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    clock = Clock()
    residual = ResidualBlocking(clock)
    c = check(front.port, holdoff=180, control_max_age=600)
    await run(c, vantage, residual)  # the control completes, then the target triggers
    clock.now += 60
    held = await run(c, vantage, residual)
    control = by_label(held)["control"]
    assert control["carried"]["sni"] == CONTROL and control["carried"]["age_s"] == 60.0
    assert held.facts["holdoff"] == {"remaining_s": 120.0, "triggered_s_ago": 60.0}


async def test_a_stale_control_is_sent_again_first_and_a_completed_one_is_fresh(serve, backend, vantage):
    """Past control_max_age nothing is carried: the control goes first although the address is
    held; it is marked contaminated, and since it completed it is the new comparison."""
    front = await serve(SniFilter(backend.port, {BLOCKED}))
    clock = Clock()
    residual = ResidualBlocking(clock)
    c = check(front.port, holdoff=180, control_max_age=30)
    await run(c, vantage, residual)
    clock.now += 60  # held (trigger 60 s ago), the control is 60 s old: stale
    again = await run(c, vantage, residual, "target-first")
    control = by_label(again)["control"]
    assert control["skipped"] is None and control["contaminated"] is True and control["server_hello"] is True
    assert front.seen[3] == CONTROL  # sent, first
    clock.now += 10
    assert by_label(await run(c, vantage, residual))["control"]["carried"]["age_s"] == 10.0


async def test_an_attempt_during_which_another_check_triggers_is_contaminated(serve, backend, vantage):
    residual = ResidualBlocking()
    key = ("local", "127.0.0.1", backend.port)

    class Triggering(Vantage):
        """A vantage whose every new socket comes just as another check triggers on the address."""

        def new_socket(self, family, type=socket.SOCK_STREAM):
            residual.trigger(key, 180)
            return super().new_socket(family, type)

    v = Triggering(name="local", extra_ca_files=vantage.extra_ca_files)
    result = await run(check(backend.port, sni=BLOCKED), v, residual, "target-first")
    assert [o["contaminated"] for o in result.facts["sni_experiment"]] == [True, True, True]


def test_the_memory_is_recalled_from_stored_results():
    """An agent that starts again knows the triggers and the completed controls of its last runs."""
    clock = Clock()
    residual = ResidualBlocking(clock)
    key = ("local", "192.0.2.7", 443)
    ago = utcnow() - timedelta(seconds=50)
    stored = ProbeResult(check="t", kind="tls", vantage="local", target="blocked.example:443", started_at=ago, ok=False, duration_s=1.0,
                         facts={"ip": "192.0.2.7", "sni_experiment": [
                             {"label": "control", "sni": CONTROL, "skipped": None, "server_hello": True, "trigger": False},
                             {"label": "target", "sni": BLOCKED, "skipped": None, "server_hello": False, "trigger": True},
                         ]})
    residual.recall([stored])
    assert 129 < residual.remaining(key, 180) <= 130
    carried = residual.last_control(key, 600)
    assert carried is not None and carried.sni == CONTROL and 50 <= carried.age_s < 51
    assert residual.last_control(key, 30) is None
