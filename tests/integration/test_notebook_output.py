"""Output comes home in a notebook: a notebook executed headless (nbclient, a real Jupyter kernel)
against a real node shows each remote print under the cell that made the call, in order, stdout
and stderr apart; a remote process's output shows under the cell that spawned it, not the one
running when it arrives."""
from __future__ import annotations

import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from pynode.testing import LocalCluster

COMPUTE = "nbout@127.0.2.21"
CELL_TIMEOUT = 120  # seconds: a kernel's first cell imports exmc and attaches on a loaded box

CELLS = {
    "attach": "%load_ext livebook_client\nimport os, pynode\nsession = %attach $TARGET",
    "remote": "%%remote\nimport sys\nfor i in range(3):\n    print('remote line', i)\n"
              "print('remote warning', file=sys.stderr)\n'cell value'",
    "local": "print('local line')",
    "call": "def shout(n):\n    for i in range(n):\n        print('call line', i)\n    return n\n"
            "session.call(shout, 2)",
    "spawn": "def report(parent):\n    print('from a spawned process')\n    pynode.send(parent, 'done')\n"
             "pynode.spawn(TARGET, report, pynode.self_pid())\npynode.receive(30)",
    "late": "def late():\n    import time\n    time.sleep(1.0)\n    print('late line')\n"
            "late_pid = pynode.spawn(TARGET, late)\nlate_ref = pynode.monitor(late_pid)",
    "after": "down = pynode.receive(30, match=lambda m: m[0] == 'DOWN' and m[1] == late_ref)\n"
             "print('after:', down[3])",
}


def streams(cell) -> dict[str, str]:
    """Text per stream name ('stdout', 'stderr') the cell's outputs hold."""
    found: dict[str, str] = {}
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            found[output["name"]] = found.get(output["name"], "") + output["text"]
    return found


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster([COMPUTE]) as cluster:
        patch = pytest.MonkeyPatch()
        patch.setenv("LIVEBOOK_TARGET", COMPUTE)
        patch.setenv("PYNODE_COOKIE", cluster.cookie)
        try:
            yield cluster
        finally:
            patch.undo()


@pytest.fixture(scope="module")
def executed(cluster, tmp_path_factory):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("import os\nTARGET = os.environ['LIVEBOOK_TARGET']")]
    notebook.cells += [nbformat.v4.new_code_cell(source, metadata={"name": name}) for name, source in CELLS.items()]
    workdir = tmp_path_factory.mktemp("notebook_output")
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return {cell.metadata.get("name"): cell for cell in notebook.cells}, cluster


def test_remote_cell_output_shows_under_it_in_order(executed) -> None:
    cells, cluster = executed
    remote = streams(cells["remote"])
    assert remote["stdout"] == "remote line 0\nremote line 1\nremote line 2\n"
    assert remote["stderr"] == "remote warning\n"
    assert "remote line" not in cluster.stdout(COMPUTE)
    assert streams(cells["local"]) == {"stdout": "local line\n"}
    assert streams(cells["call"]) == {"stdout": "call line 0\ncall line 1\n"}


def test_spawned_process_output_shows_under_the_cell_that_spawned_it(executed) -> None:
    cells, _ = executed
    assert streams(cells["spawn"]) == {"stdout": "from a spawned process\n"}
    # printed a second after its cell had finished, while "after" ran: not shown under "after"
    assert streams(cells["after"]) == {"stdout": "after: normal\n"}



def test_late_output_carries_the_parent_header_of_the_spawning_cell(cluster) -> None:
    """What a notebook frontend files output under is the stream message's parent header (nbclient
    drops outputs that arrive after their cell ended, so this reads the kernel's iopub itself)."""
    kernel, client = start_new_kernel(kernel_name="python3")
    try:
        for source in ("import os\nTARGET = os.environ['LIVEBOOK_TARGET']", CELLS["attach"]):
            setup = client.execute_interactive(source, timeout=CELL_TIMEOUT)
            assert setup["content"]["status"] == "ok", setup["content"]
        spawning = client.execute_interactive(CELLS["late"], timeout=CELL_TIMEOUT)
        assert spawning["content"]["status"] == "ok", spawning["content"]
        running = client.execute(CELLS["after"])
        parents: dict[str, str] = {}
        deadline = time.monotonic() + CELL_TIMEOUT
        while "late line\n" not in parents or "after: normal\n" not in parents:
            message = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if message["msg_type"] == "stream":
                parents[message["content"]["text"]] = message["parent_header"].get("msg_id")
        assert parents["after: normal\n"] == running
        assert parents["late line\n"] == spawning["parent_header"]["msg_id"]
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)
