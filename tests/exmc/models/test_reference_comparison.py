"""The reference comparison's criteria, on synthetic posteriors with known answers (no sampling)."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from exmc.models import validation
from exmc.models.posteriordb import load_posterior

N_REF_CHAINS, N_DRAWS = 10, 1000
REF_MEAN = np.array([1.0, -2.0])
REF_SD = np.array([0.5, 3.0])


class FakeTrace(dict):
    """What :func:`validation.compare` reads from a trace: draws by name and ``stats``."""

    def __init__(self, draws, divergent=0):
        super().__init__(draws)
        flags = np.zeros(N_DRAWS, dtype=bool)
        flags[:divergent] = True
        self.stats = {"divergent": flags}


@pytest.fixture()
def posterior(tmp_path):
    """A posterior ``d-m`` with parameters ``beta[1]``, ``beta[2]`` (iid normal reference draws)."""
    rng = np.random.default_rng(1)
    for folder in ("posteriors", "reference_draws", "reference_info"):
        (tmp_path / folder).mkdir()
    (tmp_path / "posteriors" / "d-m.json").write_text(json.dumps({"model_name": "m", "data_name": "d"}))
    chains = [{f"beta[{i + 1}]": list(rng.normal(REF_MEAN[i], REF_SD[i], N_DRAWS)) for i in range(2)}
              for _ in range(N_REF_CHAINS)]
    with zipfile.ZipFile(tmp_path / "reference_draws" / "d-m.json.zip", "w") as archive:
        archive.writestr("d-m.json", json.dumps(chains))
    info = {"inference": {"method_arguments": {"control": {"adapt_delta": 0.95, "max_treedepth": 12}}},
            "diagnostics": {"divergent_transitions": [0] * N_REF_CHAINS}}
    (tmp_path / "reference_info" / "d-m.info.json").write_text(json.dumps(info))
    return load_posterior("d-m", tmp_path)


def _traces(shift=(0.0, 0.0), scale=(1.0, 1.0), divergent=0, seed=2):
    rng = np.random.default_rng(seed)
    mean = REF_MEAN + np.asarray(shift)
    sd = REF_SD * np.asarray(scale)
    return [FakeTrace({"beta": rng.normal(mean, sd, size=(N_DRAWS, 2))}, divergent if c == 0 else 0)
            for c in range(4)]


def test_independent_draws_of_the_same_posterior_pass(posterior):
    check = validation.compare(posterior, _traces())
    assert check.ok, check.failures()
    assert [e.name for e in check.elements] == ["beta[1]", "beta[2]"]
    assert check.elements[1].ref_sd == pytest.approx(REF_SD[1], rel=0.03)


def test_a_mean_off_by_ten_mcse_fails_and_names_the_element(posterior):
    # mcse of 4000 iid draws is sd/sqrt(4000); a shift of 10 combined mcse is far beyond 4.
    shift = 10 * REF_SD[1] * np.sqrt(1 / 4000 + 1 / 10000)
    check = validation.compare(posterior, _traces(shift=(0.0, shift)))
    assert not check.ok
    assert len(check.failures()) == 1 and check.failures()[0].startswith("beta[2]: mean")


def test_an_sd_fifteen_percent_too_large_fails(posterior):
    check = validation.compare(posterior, _traces(scale=(1.15, 1.0)))
    assert [f.split(":")[0] for f in check.failures()] == ["beta[1]"]
    assert "sd" in check.failures()[0]


def test_divergences_fail_only_where_stan_had_none(posterior):
    check = validation.compare(posterior, _traces(divergent=3))
    assert check.divergences == 3 and not check.ok
    assert check.failures() == ["3 divergences (Stan had none)"]


def test_missing_parameter_is_named(posterior):
    with pytest.raises(KeyError, match="'beta'"):
        validation.compare(posterior, [FakeTrace({"alpha": np.zeros((N_DRAWS,))})])


def test_stan_settings_translate_control_names(posterior):
    assert validation.stan_settings(posterior) == {"target_accept": 0.95, "max_tree_depth": 12}


def test_markdown_table_has_one_row_per_posterior(posterior):
    checks = [validation.compare(posterior, _traces()), validation.compare(posterior, _traces(divergent=1))]
    table = validation.markdown_table(checks).splitlines()
    assert len(table) == 4
    assert "| pass |" in table[2] and "| FAIL |" in table[3]
