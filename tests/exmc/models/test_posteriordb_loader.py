"""The posteriordb reader: Stan name parsing, grouping of draws, folder lookup and its errors."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from exmc.models import posteriordb
from exmc.models.posteriordb import PosteriorDBError, group_stan_names, load_posterior, parse_stan_name


def test_parse_stan_name_gives_base_and_zero_based_index():
    assert parse_stan_name("sigma") == ("sigma", ())
    assert parse_stan_name("beta[3]") == ("beta", (2,))
    assert parse_stan_name("L[2,1]") == ("L", (1, 0))


@pytest.mark.parametrize("bad", ["beta[]", "1x", "beta[a]", "beta[1"])
def test_parse_stan_name_rejects_non_names(bad):
    with pytest.raises(ValueError, match=r"not a Stan parameter name"):
        parse_stan_name(bad)


def test_group_stan_names_places_elements_by_index_not_by_order():
    flat = {"beta[2]": [20.0, 21.0], "sigma": [1.0, 2.0], "beta[1]": [10.0, 11.0],
            "L[1,2]": [3.0, 4.0], "L[1,1]": [1.0, 2.0]}
    grouped = group_stan_names(flat)
    np.testing.assert_array_equal(grouped["beta"], [[10.0, 20.0], [11.0, 21.0]])
    np.testing.assert_array_equal(grouped["sigma"], [1.0, 2.0])
    assert grouped["L"].shape == (2, 1, 2)
    np.testing.assert_array_equal(grouped["L"][:, 0, 1], [3.0, 4.0])


def test_group_stan_names_names_a_parameter_with_a_missing_element():
    with pytest.raises(ValueError, match=r"'beta'.*2 elements"):
        group_stan_names({"beta[1]": [0.0], "beta[3]": [0.0]})


def _write_posterior(root, name="d-m", chains=2):
    (root / "posteriors").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "reference_draws").mkdir()
    (root / "posteriors" / f"{name}.json").write_text(json.dumps(
        {"model_name": "m", "data_name": "d", "dimensions": {"beta": 2}}))
    with zipfile.ZipFile(root / "data" / "d.json.zip", "w") as archive:
        archive.writestr("d.json", json.dumps({"N": 2, "y": [1.0, 2.0]}))
    draws = [{"beta[1]": [float(c), float(c)], "beta[2]": [5.0, 6.0]} for c in range(chains)]
    with zipfile.ZipFile(root / "reference_draws" / f"{name}.json.zip", "w") as archive:
        archive.writestr(f"{name}.json", json.dumps(draws))


def test_environment_variable_selects_the_folder(tmp_path, monkeypatch):
    _write_posterior(tmp_path)
    monkeypatch.setenv(posteriordb.ENV_VAR, str(tmp_path))
    assert posteriordb.available()
    assert posteriordb.list_posteriors() == ["d-m"]
    posterior = load_posterior("d-m")
    assert (posterior.model_name, posterior.data_name, posterior.dimensions) == ("m", "d", {"beta": 2})
    assert posterior.data() == {"N": 2, "y": [1.0, 2.0]}
    assert len(posterior.reference_chains()) == 2
    draws = posterior.reference_draws()
    np.testing.assert_array_equal(draws["beta"], [[0.0, 5.0], [0.0, 6.0], [1.0, 5.0], [1.0, 6.0]])


def test_absent_folder_is_unavailable_and_lists_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(posteriordb.ENV_VAR, str(tmp_path / "absent"))
    assert not posteriordb.available()
    assert posteriordb.list_posteriors() == []


def test_missing_posterior_and_missing_draws_are_named(tmp_path):
    _write_posterior(tmp_path)
    with pytest.raises(PosteriorDBError, match=r"posterior 'nope' not found"):
        load_posterior("nope", tmp_path)
    (tmp_path / "reference_draws" / "d-m.json.zip").unlink()
    with pytest.raises(PosteriorDBError, match=r"d-m\.json"):
        load_posterior("d-m", tmp_path).reference_chains()
