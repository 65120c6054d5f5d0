import numpy as np
import pytest
from click.testing import CliRunner

from matflow_vae3d.cli import COMMANDS, cli
from matflow_vae3d.cp.loadcase import LoadCase, LoadStep


def test_help_lists_every_command():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in COMMANDS:
        assert name in res.output


def test_uniaxial_loadcase_round_trips_through_damask_dict():
    lc = LoadCase.uniaxial()
    assert lc.n_increments == 20
    np.testing.assert_allclose(lc.times()[[0, 1, -1]], [0.0, 0.5, 10.0])
    d = lc.to_damask()
    mech = d["loadstep"][0]["boundary_conditions"]["mechanical"]
    assert mech["dot_F"][0][0] == 1e-3 and mech["dot_F"][1][1] == "x"
    assert mech["P"][1][1] == 0.0 and mech["P"][0][0] == "x"
    back = LoadCase.from_damask(d)
    np.testing.assert_array_equal(np.isnan(back.steps[0].stress), np.isnan(lc.steps[0].stress))
    assert back.steps[0].t == pytest.approx(10.0)


def test_loadcase_refuses_unsupported_features_by_name():
    d = LoadCase.uniaxial().to_damask()
    d["loadstep"][0]["boundary_conditions"]["mechanical"]["L"] = [[0] * 3] * 3
    with pytest.raises(ValueError, match="L"):
        LoadCase.from_damask(d)
    with pytest.raises(ValueError, match="exactly one"):
        LoadStep(np.zeros((3, 3)), np.zeros((3, 3)), t=1, N=1)
