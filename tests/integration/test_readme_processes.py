"""The README's seed-style process example runs as written (against a real exmc node, names
moved to this test's addresses): the spawned sampler reports progress to a registered name, its
print comes home, the chains arrive by message and the DOWN is normal."""
from __future__ import annotations

import re
from pathlib import Path

from pynode import Node
from pynode.testing import LocalCluster

README = Path(__file__).resolve().parents[2] / "README.md"
NOTEBOOK = "readme_nb@127.0.2.38"
COMPUTE = "readme_exmc@127.0.2.39"


def example() -> str:
    text = README.read_text()
    section = text[text.index("### Processes: spawn, monitor, link"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return (code.replace("livebook@127.0.0.13", NOTEBOOK).replace("exmc@127.0.0.14", COMPUTE)
            .replace('cookie="s3cret"', "cookie=COOKIE"))


def test_the_readme_process_example_runs(capsys) -> None:
    with LocalCluster([COMPUTE], preload=["exmc"]) as cluster:
        namespace = {"COOKIE": cluster.cookie}
        try:
            exec(compile(example(), "README.md", "exec"), namespace)
        finally:
            Node.stop()
    chains = namespace["chains"]
    assert len(chains) == 4 and chains[0]["mu"].shape == (1000,)
    out = capsys.readouterr().out
    assert f"sampling on {COMPUTE}\n" in out  # the remote process's print, on this node
    assert "chain 0: iteration 1500" in out and "chain 3: iteration 1500" in out
