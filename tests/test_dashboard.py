"""`flchain dashboard` in a real browser (headless Chromium) over a real chain and a real federated run:
the tables show what the chain holds, a new round appears without a reload, verify tells a good blob
from a corrupted one, and a hostile string registered on-chain shows as text and runs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from fl_chain import watchdog
from fl_chain.chain import ledger, registry
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.setup.localnode import free_port
from fl_chain.chain.watcher import ChainEvent
from fl_chain.dashboard.ledger_view import ChainFacts, LedgerView
from fl_chain.dashboard.verify import _within_store
from fl_chain.proctree import stop_pid
from tests.browser import chromium, wait_for
from tests.canary import canary

FLCHAIN = [sys.executable, "-m", "fl_chain"]
HOSTILE_ENDPOINT = "<img src=x onerror=alert(1)>"


def _rows(driver, table: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))",
        table,
    )


def _register_hostile_node(local: bootstrap.LocalDeployment) -> str:
    """A node whose registered endpoint is markup: attacker-controlled text the page must not run."""
    from eth_account import Account

    node = Account.create()
    client = local.client
    client.fund(local.admin, node.address, 10**18)
    registry.register(client, node, registry.Capacity(2, 2048, 100), endpoint=HOSTILE_ENDPOINT)
    return node.address


@pytest.mark.timeout(400)
def test_the_dashboard_shows_the_ledger_live_and_verifies_blobs(tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    from fl_chain.config import RunConfig
    from fl_chain.coordinator.committer import RoundCommitter
    from fl_chain.demo import run_demo
    from fl_chain.store import ModelStore

    home = tmp_path / "home"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    dashboard = None
    try:
        hostile = _register_hostile_node(local)
        port = free_port()
        with open(tmp_path / "dashboard.log", "w") as log:  # the child keeps its own copy of the file
            dashboard = subprocess.Popen(
                [*FLCHAIN, "dashboard", "--home", str(home), "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        watchdog.watch(dashboard.pid)
        url = f"http://127.0.0.1:{port}/"
        wait_for(
            lambda: "Ctrl-C stops" in (tmp_path / "dashboard.log").read_text(), 60, "the dashboard to serve"
        )

        # Read-only and loopback-only, whatever a page elsewhere tries.
        assert requests.post(url + "api/ledger", timeout=5).status_code == 405
        assert (
            requests.get(url + "api/ledger", headers={"host": "evil.example"}, timeout=5).status_code == 400
        )
        headers = requests.get(url, timeout=5).headers
        assert "script-src 'self'" in headers["content-security-policy"]

        with chromium(tmp_path) as driver:
            driver.get(url)
            wait_for(
                lambda: driver.execute_script("return document.body.dataset.version"), 20, "the first paint"
            )
            driver.execute_script("window.__loadedOnce = true")  # gone if the page ever reloads

            # The hostile endpoint is shown literally, and nothing it contains ran or became an element.
            nodes = wait_for(lambda: _rows(driver, "#nodes-table"), 20, "the node table")
            hostile_row = next(r for r in nodes if r[0] == hostile)
            assert HOSTILE_ENDPOINT in hostile_row and "Pending" in hostile_row
            assert driver.execute_script("return document.querySelectorAll('img').length") == 0
            with pytest.raises(NoAlertPresentException):
                driver.switch_to.alert.text  # noqa: B018 - reading it is the check

            # A short federated run on the same chain: its rounds arrive while the page is open.
            config = RunConfig()
            config.federation.rounds = 2
            config.federation.min_nodes = 3  # every round waits for all three (the page counts their rounds)
            result = run_demo(config, 3, home, local=local, plot=False)
            assert result.chain_rounds == 3
            rounds = wait_for(
                lambda: len(_rows(driver, "#rounds-table")) == 3 and _rows(driver, "#rounds-table"),
                20,
                "3 rounds",
            )
            client = local.client
            for row in rounds:
                record = ledger.get_round(client, result.task, int(row[0]))
                assert row[2].startswith("0x" + record.model_hash.hex()[:6])
                assert int(row[4]) == record.participant_count
                assert row[7].endswith("%")  # accuracy from the server's report beside the chain
            nodes = _rows(driver, "#nodes-table")
            for address in result.nodes:
                row = next(r for r in nodes if r[0] == address)
                assert row[1] == registry.status_of(client, address) == "Active"
                assert row[3] == "2"  # scored in rounds 1 and 2
            driver.save_screenshot(str(tmp_path / "dashboard-after-run.png"))

            # One more round, committed outside the run: it appears live, without a reload.
            store = ModelStore(home / "store")
            last = ledger.get_round(client, result.task, 2)
            committer = RoundCommitter(
                client, local.coordinator, result.task, store, parent_hash=last.model_hash
            )
            commit = committer.commit(3, {"w": np.arange(8, dtype=np.float32)}, {result.nodes[0]: 900_000})
            shown = wait_for(
                lambda: any(r[0] == "3" for r in _rows(driver, "#rounds-table")), 10, "round 3 on the page"
            )
            assert shown and driver.execute_script("return window.__loadedOnce === true")
            gas_cell = next(r for r in _rows(driver, "#rounds-table") if r[0] == "3")[5]
            assert int(gas_cell.replace(",", "")) == commit.gas

            # Verify: the blob matches; corrupted on disk, it no longer does.
            def verify_newest() -> str:
                driver.execute_script(
                    "document.querySelector('#rounds-table tbody tr[data-round=\"3\"] button.verify').click()"
                )
                return wait_for(
                    lambda: driver.execute_script(
                        "const r = document.querySelector("
                        "'#rounds-table tbody tr[data-round=\"3\"] .verify-result');"
                        "const done = ['match', 'mismatch', 'unavailable'];"
                        "return r && done.includes(r.textContent) && r.textContent"
                    ),
                    20,
                    "a verification result",
                )

            assert verify_newest() == "match"
            blob = store.local_path(commit.model_hash)
            blob.write_bytes(blob.read_bytes()[:-4] + b"\x00\x00\x00\x01")
            assert verify_newest() == "mismatch"
            driver.save_screenshot(str(tmp_path / "dashboard-mismatch.png"))
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
    finally:
        if dashboard is not None:
            stop_pid(dashboard.pid)
            watchdog.forget(dashboard.pid)
        local.stop()


def test_the_dashboard_refuses_a_public_address_without_consent(tmp_path: Path) -> None:
    """A non-loopback --host needs --allow-remote: a one-line error and exit 1 before anything starts."""
    done = subprocess.run(
        [*FLCHAIN, "dashboard", "--home", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--allow-remote" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_blob_uris_outside_the_task_store_are_never_fetched() -> None:
    """The URI of a round is attacker-controlled: only the task's own store is read."""
    base = "file:///srv/store/"
    assert _within_store("file:///srv/store/ab12", base) is None
    assert _within_store("http://127.0.0.1:9/ab12", base) is not None  # another scheme
    assert _within_store("file:///etc/passwd", base) is not None  # outside the store directory
    assert _within_store("file:///srv/store/../../etc/passwd", base) is not None
    assert _within_store("ftp://host/ab12", "ftp://host/") is not None  # a scheme never fetched
    assert _within_store("https://blobs.example/x/ab", "https://blobs.example/x/") is None
    assert _within_store("https://evil.example/x/ab", "https://blobs.example/x/") is not None


def _event(name: str, block: int, index: int, removed: bool = False, **args) -> ChainEvent:
    return ChainEvent("k", name, "C", block, f"0x{block:064x}", f"0x{block:064x}", index, args, removed)


def test_the_ledger_view_folds_events_and_retracts_orphaned_ones() -> None:
    """Pure fold: a retracted round disappears; an automatic suspension carries its reason."""
    node = "0x" + "11" * 20
    view = LedgerView()
    view.apply(
        [
            _event("TaskCreated", 1, 0, task=1, owner=node, configHash="0x00", blobBase="file:///s/"),
            _event(
                "RoundCommitted",
                2,
                0,
                task=1,
                round=0,
                modelHash="0xaa",
                parentHash="0x00",
                uri="",
                participantCount=0,
            ),
            _event("NodeStatusChanged", 3, 0, node=node, to=2, by=node, **{"from": 1}),
            _event("AutoSuspended", 4, 0, node=node, value=100_000),
            _event("NodeStatusChanged", 4, 1, node=node, to=3, by=node, **{"from": 2}),
        ]
    )
    picture = view.snapshot(ChainFacts(block_time={2: 1000}, tx_gas={}))
    assert picture["rounds"][0]["uri"] == "file:///s/aa" and picture["rounds"][0]["time"] == 1000
    assert picture["nodes"][0]["status"] == "Suspended"
    assert "0.100" in picture["nodes"][0]["suspended"]["reason"]
    view.apply([_event("RoundCommitted", 2, 0, removed=True)])
    assert view.snapshot(ChainFacts())["rounds"] == []


def test_accuracy_comes_from_the_chain_or_a_server_report_of_the_same_model(chain, tmp_path: Path) -> None:
    """Beside a server's home (HOME/runs/*/rounds.jsonl) a round gains the accuracy its report gives for
    that model hash; a report naming a hash the chain does not hold attaches to nothing; a damaged
    report is shown as such and costs nothing else."""
    from fl_chain.coordinator.committer import RoundCommitter
    from fl_chain.dashboard.sync import LedgerSync
    from fl_chain.store import ModelStore
    from fl_chain.wire.report import RoundReport, RunEvents

    committer = RoundCommitter.new_task(
        chain.client, chain.coordinator, ModelStore(tmp_path / "s"), b"\x09" * 32
    )
    first = committer.commit(0, {"w": np.zeros(3, dtype=np.float32)})
    committer.commit(1, {"w": np.ones(3, dtype=np.float32)})
    run = tmp_path / "home" / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    events = RunEvents(run / "rounds.jsonl")
    events.emit(RoundReport(round=0, accuracy=0.5, model_hash="0x" + first.model_hash.hex()))
    events.emit(RoundReport(round=1, accuracy=0.9, model_hash="0x" + "ab" * 32))  # not on this chain
    sync = LedgerSync(chain.client, tmp_path / "home")
    sync.step()
    rounds = {r["round"]: r for r in sync.snapshot()["rounds"] if r["task"] == committer.task}
    assert rounds[0]["accuracy"] == 0.5 and rounds[0]["accuracy_source"] == "server report"
    assert rounds[1]["accuracy"] is None
    (tmp_path / "home" / "runs" / "20260102-000000").mkdir()
    (tmp_path / "home" / "runs" / "20260102-000000" / "rounds.jsonl").write_text("{not json\n")
    sync.step()
    picture = sync.snapshot()
    assert "not a run entry" in picture["chain"]["report_error"] and picture["chain"]["status"] == "live"


def _task(chain, blob_base: str, uri: str, digest: bytes = b"\x0c" * 32) -> int:
    """A task whose blob base the coordinator chose, with round 0 at `uri`."""
    task = ledger.create_task(chain.client, chain.coordinator, b"\x0a" * 32, blob_base)
    ledger.commit_round(chain.client, chain.coordinator, task, 0, digest, uri, ledger.ZERO_HASH, {})
    return task


SAME_ORIGIN = {"x-flchain-verify": "1", "origin": "http://testserver", "sec-fetch-site": "same-origin"}


def test_verify_reads_no_local_file_and_no_private_address(chain) -> None:
    """A task owner who sets the blob base to file:///etc/ or to a link-local or loopback address gets
    neither a local file's hash and size nor a request to that address out of the dashboard (the old GET
    route hashed /etc/passwd and fetched from any address the blob base named)."""
    from starlette.testclient import TestClient

    from fl_chain.dashboard.app import make_app
    from fl_chain.dashboard.sync import LedgerSync

    with canary() as (canary_url, _, hits):
        passwd = _task(chain, "file:///etc/", "file:///etc/passwd")
        metadata = _task(chain, "http://169.254.169.254/", "http://169.254.169.254/latest/meta-data/")
        internal = _task(chain, canary_url, canary_url + "0c" * 32)
        with TestClient(make_app(LedgerSync(chain.client), ["testserver"])) as page:
            for task in (passwd, metadata, internal):
                assert page.get(f"/api/verify/{task}/0").status_code == 405  # no GET: no <img src=…>
            answers = {
                task: page.post(f"/api/verify/{task}/0", headers=SAME_ORIGIN).json()
                for task in (passwd, metadata, internal)
            }
        assert hits == []  # nothing reached the internal server
    for answer in answers.values():
        assert answer["status"] == "unavailable" and answer["refused"] and "bytes" not in answer, answer
    assert "file:///etc/passwd: file:// is read only inside a local store" in answers[passwd]["detail"]
    assert "169.254.169.254 is a link-local address; not fetched" in answers[metadata]["detail"]
    assert "127.0.0.1 is a loopback address; not fetched" in answers[internal]["detail"]


def test_verify_is_refused_cross_site_and_reads_the_own_store(chain, tmp_path: Path) -> None:
    """Verify runs only for the dashboard's own page: a cross-site GET (any <img> elsewhere could send
    one) is not routed, and a POST with another Origin, from a cross-site fetch or without the page's
    header is refused (403) before anything is fetched. The dashboard's own stores (a directory, an
    http URL at a private address) are read as before."""
    from starlette.testclient import TestClient

    from fl_chain.dashboard.app import make_app
    from fl_chain.dashboard.sync import LedgerSync
    from fl_chain.store import ModelStore

    store = ModelStore(tmp_path / "store")
    digest, uri = store.put_arrays({"w": np.ones(3, dtype=np.float32)})
    local = _task(chain, store.base_uri, uri, digest)
    with canary() as (canary_url, _, hits):
        remote = _task(chain, canary_url, canary_url + "0c" * 32)
        with TestClient(make_app(LedgerSync(chain.client), ["testserver"])) as page:
            evil = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
            assert page.get(f"/api/verify/{remote}/0", headers=evil).status_code == 405
            for headers in (
                {**SAME_ORIGIN, "origin": "http://evil.example"},
                {**SAME_ORIGIN, "origin": "null"},
                {**SAME_ORIGIN, "sec-fetch-site": "cross-site"},
                {"origin": "http://testserver"},  # a form post from elsewhere cannot add the header
            ):
                refused = page.post(f"/api/verify/{remote}/0", headers=headers)
                assert refused.status_code == 403 and "refused" in refused.json()["detail"], headers
        from fl_chain.dashboard.verify import dashboard_policy

        reads = dashboard_policy([tmp_path / "store", canary_url])  # the operator's own stores
        with TestClient(make_app(LedgerSync(chain.client), ["testserver"], reads)) as page:
            for headers in (
                {**SAME_ORIGIN, "origin": "http://evil.example"},
                {"origin": "http://testserver"},
            ):
                assert page.post(f"/api/verify/{remote}/0", headers=headers).status_code == 403
            assert hits == []
            assert page.post(f"/api/verify/{local}/0", headers=SAME_ORIGIN).json()["status"] == "match"
            fetched = page.post(f"/api/verify/{remote}/0", headers=SAME_ORIGIN).json()
    assert fetched["status"] == "mismatch" and fetched["bytes"] == 6 and set(hits) == {"/" + "0c" * 32}
