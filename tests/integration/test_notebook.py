"""The demo notebook executed headless (nbclient) against a real exmc node, outputs checked;
and a Jupyter kernel interrupted while it samples remotely."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from process_watch import gone, wait_for_busy

from pynode.testing import LocalCluster, wait_until

NOTEBOOK = Path(__file__).resolve().parents[2] / "livebook_client" / "notebooks" / "cluster_sampling_demo.ipynb"
COMPUTE = "exmc@127.0.0.57"

# Seconds any one cell may run: the sampling cell on a cold pool of a loaded 2-core box.
CELL_TIMEOUT = 120


def text_of(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


def cell_after(notebook, source_fragment: str):
    matches = [cell for cell in notebook.cells if cell.cell_type == "code" and source_fragment in cell.source]
    assert len(matches) == 1, f"expected one code cell containing {source_fragment!r}"
    return matches[0]


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster([COMPUTE], preload=["exmc"]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def kernel_env(cluster):
    """What a kernel needs to find the cluster: the target and the cookie (the port-mapper port
    comes with the test session's environment)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("LIVEBOOK_TARGET", COMPUTE)
    patch.setenv("PYNODE_COOKIE", cluster.cookie)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def executed(cluster, kernel_env, tmp_path_factory):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return notebook, cluster


def test_notebook_verifies_the_cluster(executed):
    notebook, _ = executed
    text = text_of(cell_after(notebook, "%attach $TARGET"))
    assert re.search(r"I am: livebook_\d+@127\.0\.0\.57", text)
    assert f"My peers: ['{COMPUTE}']" in text
    assert "exmc connected: True" in text


def test_remote_cell_ran_on_the_compute_node(executed):
    notebook, cluster = executed
    text = text_of(cell_after(notebook, "%%remote"))
    assert f"'node': '{COMPUTE}'" in text and f"'pid': {cluster.pid(COMPUTE)}" in text


def test_sampling_shows_live_progress_that_ends_complete(executed):
    notebook, _ = executed
    cell = cell_after(notebook, "session.sample(")
    displays = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(displays) == 1, "the progress display must update in place, not append"
    final = displays[0].data
    assert "remote sampling: done" in final["text/plain"]
    assert final["text/plain"].count("1500/1500") == 4
    assert "<progress value='1500' max='1500'" in final["text/html"]
    assert re.search(rf"4 chains completed in \d+ms on {re.escape(COMPUTE)}", text_of(cell))


def test_pooled_posterior_is_close_to_pymc(executed):
    notebook, _ = executed
    text = text_of(cell_after(notebook, "pooled_mean_sd"))
    mu, mu_sd = map(float, re.search(r"mu: (\d\.\d+) ± (\d\.\d+)", text).groups())
    sigma = float(re.search(r"sigma: (\d\.\d+)", text).group(1))
    # PyMC: 2.253 ± 0.115 and 0.357; bounds > 5 MCSE (see tests/integration/test_demo.py).
    assert abs(mu - 2.253) < 0.02 and abs(mu_sd - 0.115) < 0.01 and abs(sigma - 0.357) < 0.02
    assert text.count(" Chain ") == 4


def test_summary_is_an_html_table_with_diagnostics(executed):
    notebook, _ = executed
    (cell,) = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip() == "chains"]
    (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    html = result.data["text/html"]
    assert "<table" in html and "r_hat" in html and "ess_bulk" in html


def test_plots_are_rendered_images(executed):
    notebook, _ = executed
    for fragment in ("plot_trace", "plot_posterior"):
        outputs = cell_after(notebook, fragment).outputs
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"{fragment} displayed {len(images)} images"
        assert base64.b64decode(images[0].data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupting_the_sampling_cell_cancels_the_remote_chains(cluster, kernel_env):
    kernel, client = start_new_kernel(kernel_name="python3")
    try:
        setup = client.execute_interactive(
            "import os, livebook_client\n"
            "from livebook_client.demo import seed_model\n"
            "session = livebook_client.attach(os.environ['LIVEBOOK_TARGET'])\n"
            "session.sample(seed_model(), chains=2, num_samples=10, num_warmup=10)",
            timeout=CELL_TIMEOUT)
        assert setup["content"]["status"] == "ok", setup["content"]
        request = client.execute("session.sample(seed_model(), chains=2, num_samples=10**6, num_warmup=500)")
        workers = wait_for_busy(cluster.pid(COMPUTE))
        assert workers, "no busy chain worker was seen under the exmc node"
        kernel.interrupt_kernel()  # the notebook's "interrupt the kernel" button
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == request
        assert (reply["content"]["status"], reply["content"]["ename"]) == ("error", "KeyboardInterrupt")
        assert wait_until(lambda: gone(workers), timeout=15), f"workers still running: {workers}"
        again = client.execute_interactive(
            "assert len(session.sample(seed_model(), chains=2, num_samples=50, num_warmup=50)) == 2",
            timeout=CELL_TIMEOUT)
        assert again["content"]["status"] == "ok", again["content"]
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)


def test_status_cell_shows_the_node_and_its_workers(executed):
    notebook, _ = executed
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip() == "session.status()"]
    (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    html = result.data["text/html"]
    assert "<table class='livebook-status'>" in html and COMPUTE in html
    assert re.search(r"0 busy / [1-9]\d* free", html)
