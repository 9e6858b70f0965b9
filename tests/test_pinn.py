"""Physics-informed DeepONet and the PDE problems it is trained on: exact periodicity, the finite symmetry
transformations map reference solutions to reference solutions, training from initial conditions alone lowers the
error on held-out ones, and the symmetry term has gradients."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pde.equivariance import SUPERPOSITION, equivariance_residuals, initial_time_derivative
from pde.lie_symmetry import jet, jet_indices
from pde.networks import DeepONetConfig, PIDeepONet
from pde.problems import PDE_PROBLEMS, make_pde_problem
from pde.reference import solve_heat
from pde.solver import PINNSolver

ROOT = Path(__file__).resolve().parents[1]
TINY = DeepONetConfig(hidden_dim=32, n_layers=2, latent_dim=16, ic_batch=4, initial_points=32, residual_points=16,
                      symmetry_points=4)  # fmt: skip


def tiny_model(name: str, config: DeepONetConfig = TINY, sensors: int = 32) -> PIDeepONet:
    problem = make_pde_problem(name)
    grid = torch.tensor(problem.grid[:: problem.grid_points // sensors], dtype=torch.float32)
    return PIDeepONet(problem.pde, grid, problem.length, problem.t_max, config, seed=0)


def test_initial_conditions_are_reproducible_zero_mean_sine_sums():
    problem = PDE_PROBLEMS["Heat"]
    first = problem.initial_conditions(5, np.random.default_rng(0))
    assert first.shape == (5, problem.grid_points)
    np.testing.assert_array_equal(first, problem.initial_conditions(5, np.random.default_rng(0)))
    np.testing.assert_allclose(first.mean(1), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="must be positive"):
        problem.initial_conditions(0, np.random.default_rng(0))


def test_heat_translation_and_scaling_map_solutions_to_solutions():
    problem, rng = PDE_PROBLEMS["Heat"], np.random.default_rng(1)
    u0, times = problem.initial_conditions(2, rng), np.array([0.0, 4.0, 16.0])
    shifted, scale = np.roll(u0, 37, axis=1), 1.7
    np.testing.assert_allclose(problem.solve(scale * shifted, times), scale * np.roll(problem.solve(u0, times), 37, axis=2),
                               atol=1e-10)  # fmt: skip
    augmented = problem.augment(u0, 3, rng)
    assert augmented.shape == (8, problem.grid_points)
    np.testing.assert_array_equal(augmented[:2], u0)


def test_burgers_galilean_boost_maps_solutions_to_solutions():
    problem = PDE_PROBLEMS["Burgers"]
    h = problem.length / problem.grid_points
    u0, t = problem.initial_conditions(1, np.random.default_rng(2)), 1.0
    c = 16 * h / t  # the boost moves the solution by exactly 16 grid cells at time t
    boosted = problem.solve(u0 + c, np.array([t]))[0, 0]
    np.testing.assert_allclose(boosted, np.roll(problem.solve(u0, np.array([t]))[0, 0], 16) + c, atol=1e-7)


def test_unknown_problem_names_the_close_ones():
    with pytest.raises(ValueError, match="did you mean Burgers"):
        make_pde_problem("Burger")


def test_the_deeponet_is_exactly_periodic_in_x():
    model = tiny_model("Heat")
    u0 = torch.randn(3, len(model.sensors))
    t = torch.rand(10)
    left = torch.stack([torch.zeros(10), t], 1)
    right = torch.stack([torch.full((10,), model.length), t], 1)
    torch.testing.assert_close(model.predict(u0, left), model.predict(u0, right), atol=1e-5, rtol=0)


def test_the_deeponet_jets_are_each_codes_own_derivatives():
    # jets() differentiates the trunk once and dots with every code; differentiating each code's field u(z) directly
    # must give the same numbers.
    model = tiny_model("Burgers")
    codes = model.network["branch"](torch.randn(2, len(model.sensors)))
    points = model._uniform(2, 5)
    indices = jet_indices(model.pde)
    shared = model.jets(codes, points, indices)
    bias = model.network.get_parameter("bias")
    for i, code in enumerate(codes):
        own = jet(lambda z, code=code: model._trunk(z) @ code + bias, indices, points[i])
        for index in indices:
            torch.testing.assert_close(shared[index][5 * i : 5 * (i + 1)], own[index], rtol=1e-5, atol=1e-6)


def test_training_from_initial_conditions_lowers_the_held_out_error():
    problem, rng = PDE_PROBLEMS["Heat"], np.random.default_rng(3)
    model = tiny_model("Heat", DeepONetConfig(**{**TINY.__dict__, "learning_rate": 1e-3, "ic_batch": 8}))
    stride = problem.grid_points // len(model.sensors)
    train, test = problem.initial_conditions(16, rng), problem.initial_conditions(8, rng)
    times = np.array([0.0, 8.0, 16.0])
    reference = torch.tensor(problem.solve(test, times)[:, :, ::stride].reshape(8, -1), dtype=torch.float32)
    x, t = np.meshgrid(problem.grid[::stride], times)
    points = torch.tensor(np.stack([x.ravel(), t.ravel()], 1), dtype=torch.float32)
    test_u0 = torch.tensor(test[:, ::stride], dtype=torch.float32)
    before = model.relative_l2_error(test_u0, points, reference)
    model.fit(torch.tensor(train[:, ::stride], dtype=torch.float32), 300)
    after = model.relative_l2_error(test_u0, points, reference)
    assert after < 0.75 * before, (before, after)  # 1.01 -> 0.51 here


@pytest.mark.parametrize("name", ["Heat", "Burgers"])
def test_the_symmetry_term_is_finite_and_has_parameter_gradients(name: str):
    model = tiny_model(name, DeepONetConfig(**{**TINY.__dict__, "symmetry_weight": 1.0}))
    terms = model.losses(torch.randn(2, len(model.sensors)))
    assert set(terms) == {"initial", "residual", "symmetry"} and torch.isfinite(terms["symmetry"])
    terms["symmetry"].backward()
    grads = [p.grad for p in model.network["trunk"].parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def heat_operator(nu: float, length: float):
    """The exact solution operator of u_t = ν u_xx on [0, length) as a differentiable "network": initial conditions
    at m equispaced sensors (B, m) -> u at points (B, n, 2), the band-limited interpolant of the samples (Nyquist
    mode dropped) with each Fourier mode decayed by exp(−ν k² t): `pde.reference.solve_heat` off the grid."""

    def operator(u0: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        m = u0.shape[-1]
        k = 2 * torch.pi * torch.fft.rfftfreq(m, d=length / m, dtype=u0.dtype)[:-1]
        spectrum = torch.fft.rfft(u0)[:, :-1] * torch.where(k > 0, 2.0, 1.0) / m
        x, t = points[..., :1], points[..., 1:]
        return (spectrum[:, None, :] * torch.exp(1j * k * x - nu * k**2 * t)).real.sum(-1)

    return operator


def test_the_equivariance_loss_vanishes_for_the_exact_heat_operator_and_not_for_a_perturbed_one():
    problem, stride = PDE_PROBLEMS["Heat"], 4
    sensors = torch.tensor(problem.grid[::stride])
    u0 = problem.initial_conditions(3, np.random.default_rng(0))
    exact = heat_operator(problem.nu, problem.length)
    times = np.array([0.0, 5.0, 16.0])
    x, t = np.meshgrid(sensors.numpy(), times)
    on_grid = torch.tensor(np.stack([x.ravel(), t.ravel()], 1)).expand(3, -1, -1)
    reference = np.stack([solve_heat(row, problem.nu, times, problem.length)[:, ::stride].ravel() for row in u0])
    torch.testing.assert_close(exact(torch.tensor(u0[:, ::stride]), on_grid), torch.tensor(reference), atol=1e-12,
                               rtol=0)  # fmt: skip
    points = torch.rand(3, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    points = points * torch.tensor([problem.length, problem.t_max], dtype=torch.float64)
    relations = problem.periodic_generators
    assert SUPERPOSITION in relations

    def residuals(operator):
        return equivariance_residuals(operator, problem.pde, relations, torch.tensor(u0[:, ::stride]), points, sensors,
                                      problem.length).sqrt()  # fmt: skip

    assert residuals(exact).max() < 1e-6  # relative: each relation is normalised by its change of u0

    def perturbed(u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # plus a term no relation preserves
        return exact(u, z) + 0.05 * torch.cos(2 * torch.pi * z[..., 0] / problem.length) * u.square().mean(1, True)

    assert residuals(perturbed).min() > 1e-2


def test_the_initial_time_derivative_of_burgers_is_the_reference_solvers():
    problem, stride = PDE_PROBLEMS["Burgers"], 4
    u0 = problem.initial_conditions(2, np.random.default_rng(1))
    step = 1e-5
    later = problem.solve(u0, np.array([step]))[:, 0, ::stride]
    derivative = initial_time_derivative(problem.pde, torch.tensor(u0[:, ::stride]), torch.tensor(problem.grid[::stride]),
                                         problem.length)  # fmt: skip
    np.testing.assert_allclose(derivative.numpy(), (later - u0[:, ::stride]) / step, rtol=0, atol=1e-4)


def fixed_solver(seed: int = 1, points_per_ic: int = 8, **extra) -> PINNSolver:
    tiny = dict(zip(CLI_TINY[::2], [ast.literal_eval(v) for v in CLI_TINY[1::2]], strict=True))
    return PINNSolver("Heat", seed=seed, **{**tiny, "train_initial_conditions": 3, "collocation": "fixed",
                                           "residual_points_per_ic": points_per_ic, **extra})  # fmt: skip


def test_fixed_collocation_sets_are_the_same_points_at_every_step_and_after_save_load(tmp_path: Path):
    solver = fixed_solver(residual_points=8, symmetry_points=3)
    sets = solver.model.collocation_sets.clone()
    assert sets.shape == (3, 8, 2) and (sets[..., 0] < solver.problem.length).all()
    seen, interior = [], solver.model._interior

    def recorded(n: int, rows: torch.Tensor, b: int):
        points, where = interior(n, rows, b)
        seen.append((n, rows.clone(), points))
        return points, where

    solver.model._interior = recorded
    solver.learn(3)
    assert [n for n, _, _ in seen] == [8, 3] * 3  # the residual's and the symmetry term's points, every step
    for n, rows, points in seen:
        if n == 8:  # as many points as a set holds: the whole set, the same points at every step
            torch.testing.assert_close(points, sets[rows], rtol=0, atol=0)
        else:  # fewer: drawn from the set of each row
            assert all((points[i, :, None] == sets[row][None]).all(-1).any(-1).all() for i, row in enumerate(rows))
    torch.testing.assert_close(solver.model.collocation_sets, sets, rtol=0, atol=0)
    solver.save(tmp_path / "fixed.pt")
    loaded = PINNSolver.load(tmp_path / "fixed.pt")
    torch.testing.assert_close(loaded.model.collocation_sets, sets, rtol=0, atol=0)
    larger, other_seed = fixed_solver(points_per_ic=40), fixed_solver(seed=2)
    torch.testing.assert_close(larger.model.collocation_sets[:, :8], sets, rtol=0, atol=0)  # 5 N_r extends N_r
    assert not torch.equal(other_seed.model.collocation_sets, sets)


def test_fixed_collocation_resumes_exactly(tmp_path: Path):
    straight = fixed_solver(residual_reweighting=0.1).learn(4)
    first = fixed_solver(residual_reweighting=0.1).learn(2)
    first.save(tmp_path / "half.pt")
    resumed = PINNSolver.load(tmp_path / "half.pt").learn(2, reset_num_timesteps=False)
    torch.testing.assert_close(resumed.model.collocation_weights, straight.model.collocation_weights, rtol=0, atol=0)
    for a, b in zip(straight.model.network.parameters(), resumed.model.network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["Heat", "Burgers"])
def test_the_gradient_reweighting_and_equivariance_terms_are_finite_with_gradients(name: str):
    problem = make_pde_problem(name)
    config = DeepONetConfig(**{**TINY.__dict__, "gradient_weight": 1.0, "residual_reweighting": 0.5,
                               "equivariance_weight": 1.0})  # fmt: skip
    sensors = torch.tensor(problem.grid[:: problem.grid_points // 32], dtype=torch.float32)
    model = PIDeepONet(problem.pde, sensors, problem.length, problem.t_max, config, 0, "cpu", problem.periodic_generators)
    u0 = torch.tensor(problem.initial_conditions(2, np.random.default_rng(0))[:, :: problem.grid_points // 32],
                      dtype=torch.float32)  # fmt: skip
    plain = tiny_model(name).losses(u0)["residual"]
    terms = model.losses(u0)
    assert set(terms) == {"initial", "residual", "gradient", "equivariance"} and terms["residual"] > plain
    for term in ("residual", "gradient", "equivariance"):
        assert torch.isfinite(terms[term])
        model.network.zero_grad()
        terms[term].backward(retain_graph=True)
        parts = ("branch", "trunk") if term == "equivariance" else ("trunk",)
        for part in parts:  # (derivatives in (x, t) do not read the trunk's last bias)
            grads = [p.grad.abs().sum() for p in model.network[part].parameters() if p.grad is not None]
            assert sum(grads) > 0, (term, part)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="sensors must be"):
        PIDeepONet(PDE_PROBLEMS["Heat"].pde, torch.zeros(1), 6.0, 16.0)
    model = tiny_model("Heat")
    with pytest.raises(ValueError, match="initial_conditions must be"):
        model.fit(torch.zeros(4, 7), 1)
    with pytest.raises(ValueError, match="symmetry_weight must be non-negative"):
        tiny_model("Heat", DeepONetConfig(symmetry_weight=-1.0))
    with pytest.raises(ValueError, match="gradient_weight must be non-negative"):
        tiny_model("Heat", DeepONetConfig(gradient_weight=-1.0))
    with pytest.raises(ValueError, match="residual_reweighting must be non-negative"):
        DeepONetConfig(residual_reweighting=-0.1)
    for collocation, points in (("fixed", 0), ("fresh", 10)):
        with pytest.raises(ValueError, match="residual_points_per_ic must be positive with collocation='fixed'"):
            DeepONetConfig(collocation=collocation, residual_points_per_ic=points)
    with pytest.raises(ValueError, match="collocation must be one of"):
        DeepONetConfig(collocation="random")
    with pytest.raises(ValueError, match="must name at least one relation"):
        DeepONetConfig(equivariance_generators=())
    with pytest.raises(ValueError, match="equivariance_generators must be among"):
        PINNSolver("Burgers", equivariance_weight=1.0, equivariance_generators=("scaling",))
    with pytest.raises(ValueError, match="fix_collocation"):
        tiny_model("Heat", DeepONetConfig(collocation="fixed", residual_points_per_ic=4)).fit(torch.zeros(2, 32), 1)


CLI_TINY = ["hidden_dim", "16", "n_layers", "2", "latent_dim", "8", "ic_batch", "2", "symmetry_weight", "1.0",
            "symmetry_points", "2", "residual_points", "4", "test_initial_conditions", "3", "sensors", "32"]  # fmt: skip


def test_train_py_trains_saves_and_resumes_a_pinn(tmp_path: Path):
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "train.py", "--algo", "pinn", "--env", "Burgers", "-n", "4", "--seed", "0",
             "--num-threads", "1", "--log-dir", str(tmp_path), "--no-progress", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    first = run("--hyperparams", *CLI_TINY)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "pinn").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 < results["final_eval"]["relative_l2"] < 10 and results["num_timesteps"] == 4
    assert list(run_dir.glob("events.out.tfevents.*"))
    loaded = PINNSolver.load(run_dir / "model.pt")
    assert loaded.num_timesteps == 4 and loaded.config.symmetry_weight == 1.0
    assert loaded.evaluate()["relative_l2"] == pytest.approx(results["final_eval"]["relative_l2"], rel=1e-6)
    resumed = run("--trained-agent", str(run_dir / "model.pt"), "--hyperparams", "symmetry_weight", "0.5")
    assert resumed.returncode == 0, resumed.stderr
    assert "--hyperparams symmetry_weight 0.5 ignored: a resumed pinn keeps the configuration" in resumed.stderr
    (second,) = set((tmp_path / "pinn").iterdir()) - {run_dir}
    assert json.loads((second / "results.json").read_text())["num_timesteps"] == 8
    assert PINNSolver.load(second / "model.pt").config.symmetry_weight == 1.0


def test_save_load_continues_exactly(tmp_path: Path):
    kwargs = dict(zip(CLI_TINY[::2], [ast.literal_eval(v) for v in CLI_TINY[1::2]], strict=True))
    straight = PINNSolver("Heat", seed=1, **kwargs).learn(6)
    first = PINNSolver("Heat", seed=1, **kwargs).learn(3)
    first.save(tmp_path / "half.pt")
    resumed = PINNSolver.load(tmp_path / "half.pt").learn(3, reset_num_timesteps=False)
    for a, b in zip(straight.model.network.parameters(), resumed.model.network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pinn_inputs_are_checked():
    with pytest.raises(ValueError, match="PINNSolver got unknown hyperparameters"):
        PINNSolver("Heat", symmetry_wieght=1.0)
    with pytest.raises(ValueError, match="sensors must divide"):
        PINNSolver("Heat", sensors=100)
    with pytest.raises(ValueError, match="did you mean Heat"):
        PINNSolver("Heta")
