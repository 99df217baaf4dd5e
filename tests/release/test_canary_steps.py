"""A canary that widens step by step (``[release] canary_steps``): each step judged on the rows served since it
began, with a deadline of its own; passing the last step is the promotion, failing any step the rejection. And
the spec's check of the steps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftloop.cli.main import cli
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, SpecError, load_spec
from driftloop.models.registry import ModelRegistry
from driftloop.release.controller import ReleaseController
from tests.release.conftest import outcomes


def test_a_spec_takes_widening_steps_and_refuses_others(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\n[release]\ncanary_steps = [0.05, 0.25, 0.5]\n')
    rules = load_spec(path).release
    assert rules.canary_shares == (0.05, 0.25, 0.5)
    assert [rules.canary_step_after(s) for s in (0.05, 0.25, 0.5)] == [0.25, 0.5, None]
    assert rules.canary_step_after(0.3) == 0.5 and rules.canary_step_after(0.9) is None  # an urgent canary's share
    default = ModelSpec(name="m").release
    assert default.canary_shares == (0.1,) and default.canary_step_after(0.1) is None  # one step: then champion
    path.write_text('name = "m"\n[release]\ncanary_share = 0.05\ncanary_steps = [0.05, 0.5]\n')
    assert load_spec(path).release.canary_shares == (0.05, 0.5)  # the same first share, said twice
    for body, says in [
        ("canary_steps = [0.25, 0.05]", r"the steps widen: each share above the one before, not \[0.25, 0.05\]"),
        ("canary_steps = [0.1, 0.1]", "the steps widen"),
        ("canary_steps = [0.1, 1.0]", "above 0 and below 1"),
        ("canary_steps = [0, 0.5]", "above 0 and below 1"),
        ("canary_share = 0.2\ncanary_steps = [0.05, 0.5]", "keep canary_steps .* and remove canary_share"),
    ]:
        path.write_text(f'name = "m"\n[release]\n{body}\n')
        with pytest.raises(SpecError, match=says):
            load_spec(path)


def served(write_labeled, model: str, prefix: str, canary: float, at: float, n: int = 300, seed: int = 0) -> None:
    """``n`` labeled requests the canary (v2) served at ``at`` with this accuracy, and 3 × ``n`` the champion
    (v1) served at 0.8."""
    write_labeled(model, 2, [f"{prefix}c{i}" for i in range(n)], outcomes(n, canary, seed=seed + 1), ts=at)
    write_labeled(model, 1, [f"{prefix}k{i}" for i in range(3 * n)], outcomes(3 * n, 0.8, seed=seed + 2), ts=at)


@pytest.mark.integration
def test_a_canary_widens_step_by_step_each_step_judged_on_its_own_rows(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "candidate"), release="shadow = false\ncanary_steps = [0.05, 0.25]")
    now = [time.time() - 3000]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    registry = ModelRegistry(release_settings)
    assert [d.to_stage for d in controller.step(model)] == ["canary"]
    assert registry.routing(model).canary_share == 0.05  # the first step, not canary_share's default (0.1)

    served(write_labeled, model, "a", canary=0.95, at=now[0] + 60, seed=10)
    now[0] += 600
    (widened,) = controller.step(model)
    assert widened.to_stage == "canary" and "canary passed at 5% (step 1 of 2), widened to 25%" in widened.reason
    assert registry.routing(model).canary_share == 0.25
    assert controller.step(model) == []  # the first step's rows are not the second's evidence

    served(write_labeled, model, "b", canary=0.95, at=now[0] + 60, n=250, seed=20)
    now[0] += 600
    (promoted,) = controller.step(model)
    assert promoted.to_stage == "champion" and "canary passed at 25% (step 2 of 2)" in promoted.reason
    changes = [c for c in registry.changes(model, 2) if c.from_stage != "none"]  # the controller's, on its clock
    assert [(c.from_stage, c.to_stage, c.traffic_share) for c in changes] == [
        ("candidate", "canary", 0.05),
        ("canary", "canary", 0.25),
        ("canary", "champion", 1.0),
    ]
    assert changes[1].evidence.rows == 300 and changes[2].evidence.rows == 250  # each step its own rows
    assert changes[2].evidence.result == "pass" and changes[2].evidence.metric == pytest.approx(0.95, abs=0.01)
    registry.close()


@pytest.mark.integration
def test_a_canary_worse_once_widened_is_rejected_and_each_step_has_its_own_deadline(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(
        ("champion", "candidate"), release="shadow = false\ncanary_steps = [0.05, 0.25]\ncanary_deadline_s = 1000"
    )
    now = [time.time() - 5000]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    controller.step(model)
    served(write_labeled, model, "a", canary=0.95, at=now[0] + 60, seed=30)
    now[0] += 900
    assert [d.to_stage for d in controller.step(model)] == ["canary"]
    now[0] += 600  # 1,500 s into the canary, 600 s into its second step: within that step's deadline
    assert controller.step(model) == []
    served(write_labeled, model, "b", canary=0.6, at=now[0] - 300, seed=40)
    (rejected,) = controller.step(model)
    assert rejected.to_stage == "rejected" and "canary lost at 25% (step 2 of 2)" in rejected.reason
    routing = ModelRegistry(release_settings).routing(model)
    assert routing.canary is None and routing.champion is not None and routing.champion.version == 1


@pytest.mark.integration
def test_a_person_sets_a_canary_s_share_and_the_steps_go_on_from_there(
    release_settings: Settings, new_model, write_labeled, stack
) -> None:
    model = new_model(("champion", "shadow", "candidate"), release="canary_steps = [0.05, 0.25, 0.5]")
    env = stack.with_env(
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory),
        DRIFTLOOP_ARTIFACTS=str(release_settings.artifact_location),
    ).env
    run = CliRunner().invoke
    champion = run(cli, ["models", "canary", model, "1", "--share", "0.1"], env=env)
    assert champion.exit_code == 1 and "is champion: it can go to retired, rolled_back, not canary" in champion.output
    assert run(cli, ["models", "canary", model, "2", "--share", "1"], env=env).exit_code == 2  # not a canary's share
    widened = run(cli, ["models", "canary", model, "2", "--share", "0.25", "--reason", "looks fine"], env=env)
    assert widened.exit_code == 0 and f"{model}: v2 is the canary, answering 25% of requests" in widened.stdout
    registry = ModelRegistry(release_settings)
    change = registry.changes(model, 2)[-1]
    assert (change.from_stage, change.to_stage, change.path, change.traffic_share) == (
        "shadow",
        "canary",
        "manual",
        0.25,
    )
    assert registry.routing(model).canary_share == 0.25

    second = run(cli, ["models", "canary", model, "3", "--share", "0.1"], env=env)
    assert second.exit_code == 1 and f"{model} v2 is the canary: a model has one" in second.output, second.output

    registry.transition(model, 3, "rejected", reason="not this one")  # else the newest candidate supersedes v2
    now = [time.time() + 60]  # the controller's clock after the change by hand
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    served(write_labeled, model, "a", canary=0.95, at=now[0] + 60, seed=50)
    now[0] += 600
    (decision,) = [d for d in controller.step(model) if d.version == 2]
    assert decision.to_stage == "canary" and "canary passed at 25% (step 2 of 3), widened to 50%" in decision.reason
    narrowed = run(cli, ["models", "canary", model, "2", "--share", "0.01"], env=env)
    assert narrowed.exit_code == 0 and registry.routing(model).canary_share == 0.01
    registry.close()
