"""Federated learning (issue 17): the aggregator holds ciphertexts only; model files verify.

MedChain's fl layer lives in the second venv (.venv-fl: Flower, TenSEAL,
scikit-learn), so these tests drive it as subprocesses of that venv's Python: one
short embedded run (3 hospitals, 2 rounds, CKKS, Flower's simulation engine) shared
by the module, and small scripts that inspect what the run left behind.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from medchain.crypto import sm3

REPO = Path(__file__).resolve().parents[1]
FL_PYTHON = REPO / ".venv-fl" / "bin" / "python"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]

# The chain side's seam, as a hook module: log each call, and before round 2 write a
# smaller cohort file for every hospital (the rows with active research consent).
HOOKS = """
from pathlib import Path

import numpy as np


def before(workdir: Path, r: int) -> None:
    with (workdir / "hook.log").open("a") as f:
        f.write(f"before {r}\\n")
    if r == 2:
        for org in ("hospital-a", "hospital-b", "hospital-c"):
            folder = workdir / "data" / org
            with np.load(folder / "train.npz") as d:
                keep = slice(0, 40)
                np.savez(folder / "round-2.npz", X=d["X"][keep], y=d["y"][keep],
                         sample_ids=d["sample_ids"][keep])


def after(workdir: Path, r: int) -> None:
    with (workdir / "hook.log").open("a") as f:
        f.write(f"after {r}\\n")
"""


def fl_run(code: str, *args: str, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run Python code in .venv-fl (fails with the setup hint if the venv is missing)."""
    if not FL_PYTHON.exists():
        pytest.fail(f"{FL_PYTHON} is missing: run make setup (it makes the second venv)")
    env = None
    if env_path is not None:
        env = {**os.environ, "PYTHONPATH": str(env_path)}
    return subprocess.run(
        [str(FL_PYTHON), *(["-c", code] if code else []), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )


def fl_facts(code: str) -> dict[str, Any]:
    """Run an inspection script in .venv-fl that prints one JSON object of facts."""
    done = fl_run(textwrap.dedent(code))
    assert done.returncode == 0, done.stderr[-3000:]
    facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return facts


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded CKKS run: 3 hospitals, 2 rounds, breast cancer data, the hooks above."""
    root = tmp_path_factory.mktemp("fl")
    (root / "hooks").mkdir()
    (root / "hooks" / "test_fl_hooks.py").write_text(HOOKS)
    config = {
        "rounds": 2,
        "hospitals": HOSPITALS,
        "seed": 7,
        "mode": "ckks",
        "epochs": 2,
        "before_round": "test_fl_hooks:before",
        "after_round": "test_fl_hooks:after",
    }
    (root / "config.json").write_text(json.dumps(config))
    workdir = root / "w"
    done = fl_run(
        "",
        "-m",
        "medchain.fl.run",
        "--workdir",
        str(workdir),
        "--config",
        str(root / "config.json"),
        env_path=root / "hooks",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


def test_aggregator_holds_only_ciphertexts_it_cannot_decrypt(run_dir: Path) -> None:
    """Every update the aggregator received and kept is a CKKS ciphertext; its context is
    public, so decrypting one fails; the hospitals' key opens them to the real updates."""
    facts = fl_facts(
        f"""
        import json, pickle
        from pathlib import Path
        import numpy as np
        import tenseal as ts
        from medchain.fl.model import parse_model

        w = Path({str(run_dir)!r})
        state = pickle.loads((w / "server" / "state.pkl").read_bytes())
        public = ts.context_from(state.public_context)
        secret = ts.context_from((w / "keys" / "hospitals.secret.ctx").read_bytes())

        def kept(obj, seen):
            # every object reachable from the kept state, by type name
            if id(obj) in seen:
                return
            seen.add(id(obj))
            yield type(obj).__name__
            if isinstance(obj, (list, tuple)):
                for x in obj:
                    yield from kept(x, seen)
            elif hasattr(obj, "__dict__"):
                for x in vars(obj).values():
                    yield from kept(x, seen)

        refused = 0
        for u in state.received:
            try:
                ts.ckks_vector_from(public, u.payload).decrypt()
            except ValueError:
                refused += 1
        matches = []
        for r in (1, 2):
            ups = [u for u in state.received if u.round == r]
            total = sum(np.array(ts.ckks_vector_from(secret, u.payload).decrypt()) for u in ups)
            model = parse_model((w / "models" / f"round-{{r}}.bin").read_bytes())
            n = sum(u.n for u in ups)
            matches.append(float(np.abs(total[: len(model)] / n - model).max()))
        print(json.dumps({{
            "mode": state.mode,
            "public_is_private": public.is_private(),
            "kinds": sorted({{u.kind for u in state.received}}),
            "updates": len(state.received),
            "orgs": sorted({{u.org for u in state.received}}),
            "records": sorted({{r for u in state.received for r in u.records}}),
            "refused": refused,
            "kept_types": sorted(set(kept(state, set()))),
            "update_vs_model": matches,
        }}))
        """
    )
    assert facts["mode"] == "ckks"
    assert facts["public_is_private"] is False
    assert facts["updates"] == 6 and facts["orgs"] == sorted(HOSPITALS)
    assert facts["kinds"] == ["ckks"]
    assert facts["records"] == ["update"]  # nothing else rode along in the replies
    assert facts["refused"] == 6
    # no array, float or tensor anywhere in what the aggregator kept: bytes, ints, strings
    assert set(facts["kept_types"]) <= {
        "AggregatorState",
        "ReceivedUpdate",
        "list",
        "tuple",
        "bytes",
        "int",
        "str",
        "NoneType",
    }, facts["kept_types"]
    # the ciphertexts are the hospitals' real updates: their sum / Σn is the round's model
    assert all(d < 1e-5 for d in facts["update_vs_model"]), facts["update_vs_model"]


def test_round_reports_match_the_model_files(run_dir: Path) -> None:
    """Each W/rounds/<r>.json names its model file by the file's SM3, and the final one too."""
    for r in (1, 2):
        report = json.loads((run_dir / "rounds" / f"{r}.json").read_text())
        model = (run_dir / report["model"]["path"]).read_bytes()
        assert report["model"]["path"] == f"models/round-{r}.bin"
        assert sm3(model).hex() == report["model"]["sm3"]
        assert report["participants"] == HOSPITALS
        assert report["aggregation"] == "fedavg-ckks" and report["dp"] is None
        assert set(report["metrics"]) == set(HOSPITALS)
        for m in report["metrics"].values():
            assert m["n"] > 0 and 500_000 <= m["accuracy_micro"] <= 1_000_000
        for got in report["received"].values():
            assert got["kind"] == "ckks" and got["bytes"] > 100_000
    result = json.loads((run_dir / "result.json").read_text())
    final = (run_dir / "models" / "final.bin").read_bytes()
    assert sm3(final).hex() == result["final_model"]["sm3"] == report["model"]["sm3"]


def test_round_hooks_run_and_a_round_cohort_file_is_what_trains(run_dir: Path) -> None:
    """The chain's seams: hooks before and after each round, and a round-<r>.npz written
    by the before-round hook replaces train.npz for that round only."""
    assert (run_dir / "hook.log").read_text().split("\n")[:-1] == [
        "before 1",
        "after 1",
        "before 2",
        "after 2",
    ]
    first = json.loads((run_dir / "rounds" / "1.json").read_text())
    second = json.loads((run_dir / "rounds" / "2.json").read_text())
    for org in HOSPITALS:
        assert first["data"][org]["file"] == "train.npz" and first["samples"][org] > 40
        assert second["data"][org]["file"] == "round-2.npz" and second["samples"][org] == 40
        assert first["data"][org]["sample_ids_sm3"] != second["data"][org]["sample_ids_sm3"]


def test_an_altered_model_file_is_detected(run_dir: Path) -> None:
    """load_model accepts the published file and refuses it with one bit of a weight flipped."""
    report = json.loads((run_dir / "rounds" / "2.json").read_text())
    facts = fl_facts(
        f"""
        import json
        from pathlib import Path
        from medchain.fl.model import ModelFileError, load_model

        path = Path({str(run_dir / report["model"]["path"])!r})
        good = load_model(path, {report["model"]["sm3"]!r})
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01
        altered = path.with_name("altered.bin")
        altered.write_bytes(bytes(data))
        try:
            load_model(altered, {report["model"]["sm3"]!r})
            refused = ""
        except ModelFileError as e:
            refused = str(e)
        print(json.dumps({{"weights": len(good), "refused": refused}}))
        """
    )
    assert facts["weights"] == 31  # 30 features and the bias
    assert "is not the published" in facts["refused"]


def test_a_wrong_configuration_is_refused_with_what_to_write(tmp_path: Path) -> None:
    """A mode that does not exist stops the run before anything starts, naming the choices."""
    (tmp_path / "c.json").write_text(json.dumps({"rounds": 2, "mode": "paillier"}))
    done = fl_run(
        "",
        "-m",
        "medchain.fl.run",
        "--workdir",
        str(tmp_path / "w"),
        "--config",
        str(tmp_path / "c.json"),
    )
    assert done.returncode == 1
    assert "mode: one of ['ckks', 'plain']" in done.stderr
    assert not (tmp_path / "w").exists()


def test_the_fl_layers_errors_derive_from_the_documented_base() -> None:
    """test_errors walks every module but the fl layer's, which imports Flower and
    numpy: the same check, in the venv that has them."""
    facts = fl_facts(
        """
        import importlib, inspect, json, pkgutil
        import medchain.fl
        from medchain.exceptions import MedChainError
        found, strays = [], []
        for info in pkgutil.walk_packages(medchain.fl.__path__, "medchain.fl."):
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found.append(value.__qualname__)
                    if not issubclass(value, MedChainError):
                        strays.append(value.__qualname__)
        print(json.dumps({"found": found, "strays": strays}))
        """
    )
    assert len(facts["found"]) >= 3
    assert facts["strays"] == []


def test_a_studys_epsilon_becomes_the_noise_that_spends_it_over_its_rounds() -> None:
    """`fl run` turns the study's ε (on chain, in thousandths) into the noise
    multiplier whose planned rounds spend exactly that ε; the rounds' reports then
    say the ε spent so far (fl/budget.py, pure Python, so the main venv checks it)."""
    from medchain.cli.fl import dp_config
    from medchain.fl import budget

    # One release, z = 1, δ = 1e-5: a = 2, b = ln(1e5), ε = a + 2√(ab).
    b = math.log(1e5)
    assert budget.gaussian_epsilon(1.0, 1e-5, 1) == pytest.approx(2 + 2 * math.sqrt(2 * b))
    for epsilon, rounds in [(0.5, 1), (1.0, 5), (8.0, 5), (50.0, 100)]:
        z = budget.noise_multiplier_for(epsilon, 1e-5, rounds)
        assert budget.gaussian_epsilon(z, 1e-5, rounds) == pytest.approx(epsilon)
        # fewer rounds than planned spend less; a smaller budget needs more noise
        assert rounds == 1 or budget.gaussian_epsilon(z, 1e-5, rounds - 1) < epsilon
        assert budget.noise_multiplier_for(epsilon / 2, 1e-5, rounds) > z
    study = {"dp_epsilon_milli": 8000, "rounds_planned": 5}
    dp = dp_config(study)
    assert dp is not None and dp["delta"] == 1e-5 and dp["clip_norm"] == 1.0
    assert budget.gaussian_epsilon(dp["noise_multiplier"], dp["delta"], 5) == pytest.approx(8.0)
    assert dp_config({"rounds_planned": 5}) is None
    with pytest.raises(ValueError):
        budget.noise_multiplier_for(0.0, 1e-5, 5)


def test_a_dp_run_reports_the_epsilon_spent_which_reaches_the_budget_at_the_last_round(
    tmp_path: Path,
) -> None:
    """The noise `fl run` derives from a study's ε, run for real (plain mode, the
    cheaper one): each round's report gives the clipping, the noise and the ε spent
    so far, which is the study's budget at its last planned round."""
    from medchain.fl import budget

    z = budget.noise_multiplier_for(8.0, 1e-5, 2)
    config = {
        "rounds": 2,
        "hospitals": HOSPITALS,
        "seed": 7,
        "mode": "plain",
        "epochs": 1,
        "dp": {"clip_norm": 1.0, "noise_multiplier": z, "delta": 1e-5},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    workdir = tmp_path / "w"
    done = fl_run(
        "",
        "-m",
        "medchain.fl.run",
        "--workdir",
        str(workdir),
        "--config",
        str(tmp_path / "config.json"),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    spent = []
    for r in (1, 2):
        dp = json.loads((workdir / "rounds" / f"{r}.json").read_text())["dp"]
        assert dp["clip_norm_micro"] == 1_000_000 and dp["delta_inverse"] == 100_000
        assert dp["noise_multiplier_micro"] == round(z * 1_000_000)
        spent.append(dp["epsilon_micro"])
    assert spent[0] < spent[1] == pytest.approx(8_000_000, abs=1)


def test_the_model_card_says_which_noise_the_study_trained_with(tmp_path: Path) -> None:
    """The card `fl run` registers names the clipping, noise and ε of a DP study
    (dp_config), and no privacy for a study that sets no budget."""
    from medchain.cli.fl import _model_card, dp_config

    (tmp_path / "rounds").mkdir()
    (tmp_path / "rounds" / "5.json").write_text(json.dumps({"metrics": []}))
    study = {
        "study_id": "s",
        "sponsor_org": "uni",
        "hospitals": ["a", "b"],
        "rounds_planned": 5,
        "aggregation": "ckks-fedavg",
        "dp_epsilon_milli": 8000,
    }
    card = _model_card(study, tmp_path, "m", 1, "CC-BY-4.0", b"model", {})
    assert card["training"]["differential_privacy"] == {**dp_config(study), "epsilon_milli": 8000}
    del study["dp_epsilon_milli"]
    card = _model_card(study, tmp_path, "m", 1, "CC-BY-4.0", b"model", {})
    assert card["training"]["differential_privacy"] is None
