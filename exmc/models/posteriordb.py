"""Read posteriors, data and reference draws from a local copy of stan-dev/posteriordb.

The folder layout is posteriordb's own (see ``../shared/posteriordb/README.md``)::

    posteriors/<posterior>.json          model_name, data_name, dimensions
    models/<model>.stan                  the Stan program
    data/<data>.json[.zip]               the program's data
    reference_draws/<posterior>.json.zip a JSON list of chains, each {"param[i]": [floats]}
    reference_info/<posterior>.info.json how the draws were made (ESS, R-hat, divergences)

The root is ``$EXMC_POSTERIORDB`` when set, else ``shared/posteriordb`` beside the repository
(``<repo>/../shared/posteriordb``). Nothing here is needed at run time by the sampler: it serves the
ports' tests, the validation suite and the benchmarks, which skip when :func:`available` is false.
"""
from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Environment variable that overrides where the posteriordb folder is.
ENV_VAR = "EXMC_POSTERIORDB"

_REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default location: the ``shared`` folder next to the repository checkout.
DEFAULT_ROOT = _REPO_ROOT.parent / "shared" / "posteriordb"

_STAN_NAME = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>[0-9, ]+)\])?$")


class PosteriorDBError(LookupError):
    """A posterior, data set or reference file is missing or malformed (the message names it)."""


def root(path: str | os.PathLike[str] | None = None) -> Path:
    """The posteriordb folder: ``path`` if given, else ``$EXMC_POSTERIORDB``, else the default."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


def available(path: str | os.PathLike[str] | None = None) -> bool:
    """True when the folder exists and holds a ``posteriors`` directory (callers skip otherwise)."""
    return (root(path) / "posteriors").is_dir()


def list_posteriors(path: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of all posteriors in the folder, sorted; empty when the folder is absent."""
    directory = root(path) / "posteriors"
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in directory.glob("*.json"))


def _read_json(file: Path) -> Any:
    """Read ``file`` or, when only ``file.zip`` exists, the single JSON member inside it."""
    if file.is_file():
        with file.open() as handle:
            return json.load(handle)
    zipped = file.with_name(file.name + ".zip")
    if not zipped.is_file():
        raise PosteriorDBError(f"neither {file} nor {zipped} exists")
    with zipfile.ZipFile(zipped) as archive:
        members = [m for m in archive.namelist() if m.endswith(".json")]
        if len(members) != 1:
            raise PosteriorDBError(f"{zipped} holds {len(members)} JSON members, expected exactly 1")
        return json.loads(archive.read(members[0]))


@dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior: a Stan model paired with a data set.

    Attributes:
        name: the posterior's name, ``<data>-<model>`` (e.g. ``"earnings-logearn_height"``).
        model_name: the Stan program's name (``models/<model_name>.stan``).
        data_name: the data set's name (``data/<data_name>.json[.zip]``).
        dimensions: parameter name -> number of scalar elements, as posteriordb lists them.
        root: the posteriordb folder it was read from.
    """

    name: str
    model_name: str
    data_name: str
    dimensions: dict[str, int]
    root: Path

    def data(self) -> dict[str, Any]:
        """The data dict exactly as the Stan program reads it (JSON lists, ints, floats)."""
        return _read_json(self.root / "data" / f"{self.data_name}.json")

    def stan_code(self) -> str:
        """The Stan program's source text."""
        file = self.root / "models" / f"{self.model_name}.stan"
        if not file.is_file():
            raise PosteriorDBError(f"posterior {self.name!r}: Stan program {file} is missing")
        return file.read_text()

    def reference_info(self) -> dict[str, Any]:
        """The ``reference_info`` record (sampler settings, ESS, R-hat, divergences per chain)."""
        return _read_json(self.root / "reference_info" / f"{self.name}.info.json")

    def reference_chains(self) -> list[dict[str, np.ndarray]]:
        """The reference draws: one dict per chain, Stan parameter name -> ``(n_draws,)`` array.

        Raises :class:`PosteriorDBError` when the file is missing or is not a list of chains.
        """
        raw = _read_json(self.root / "reference_draws" / f"{self.name}.json")
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            raise PosteriorDBError(f"posterior {self.name!r}: reference draws are not a list of chains")
        return [{k: np.asarray(v, dtype=float) for k, v in chain.items()} for chain in raw]

    def reference_draws(self) -> dict[str, np.ndarray]:
        """All chains pooled and grouped by parameter: base name -> ``(n_draws, *shape)`` array."""
        chains = self.reference_chains()
        pooled = {k: np.concatenate([c[k] for c in chains]) for k in chains[0]}
        return group_stan_names(pooled)


def load_posterior(name: str, path: str | os.PathLike[str] | None = None) -> Posterior:
    """Read ``posteriors/<name>.json``; raises :class:`PosteriorDBError` naming the missing file."""
    folder = root(path)
    file = folder / "posteriors" / f"{name}.json"
    if not file.is_file():
        raise PosteriorDBError(f"posterior {name!r} not found: {file} does not exist")
    record = _read_json(file)
    try:
        return Posterior(
            name=name,
            model_name=record["model_name"],
            data_name=record["data_name"],
            dimensions=dict(record.get("dimensions", {})),
            root=folder,
        )
    except KeyError as exc:
        raise PosteriorDBError(f"posterior {name!r}: {file} lacks field {exc.args[0]!r}") from None


def parse_stan_name(name: str) -> tuple[str, tuple[int, ...]]:
    """Split a Stan output name into base name and 0-based index: ``"beta[2]"`` -> ``("beta", (1,))``.

    Scalars give an empty index. Raises ``ValueError`` naming the input for anything else.
    """
    match = _STAN_NAME.match(name)
    if match is None:
        raise ValueError(f"not a Stan parameter name: {name!r}")
    index = match.group("index")
    if index is None:
        return match.group("base"), ()
    return match.group("base"), tuple(int(i) - 1 for i in index.split(","))


def group_stan_names(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Group per-element arrays ``{"beta[1]": (n,), "beta[2]": (n,)}`` into ``{"beta": (n, 2)}``.

    Each element's array must have the same leading length. Scalars keep shape ``(n,)``. The
    shape of an indexed parameter is one past its largest index on each axis; a missing element
    raises ``ValueError`` naming the parameter.
    """
    entries: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
    for key, values in flat.items():
        base, index = parse_stan_name(key)
        entries.setdefault(base, {})[index] = np.asarray(values, dtype=float)
    grouped: dict[str, np.ndarray] = {}
    for base, elements in entries.items():
        if list(elements) == [()]:
            grouped[base] = elements[()]
            continue
        shape = tuple(max(ix[d] for ix in elements) + 1 for d in range(len(next(iter(elements)))))
        if len(elements) != int(np.prod(shape)):
            raise ValueError(f"parameter {base!r}: {len(elements)} elements given, shape {shape} needs {int(np.prod(shape))}")
        n = len(next(iter(elements.values())))
        out = np.empty((n, *shape))
        for ix, values in elements.items():
            out[(slice(None), *ix)] = values
        grouped[base] = out
    return grouped
