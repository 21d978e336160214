"""Optuna samplers and pruners for ``modyolo tune``, including yolov5's mutation loop as a sampler.

- ``tpe`` (default), ``cmaes`` (needs the ``cmaes`` package), ``random``: Optuna's samplers.
- ``evolve``: yolov5 7.0's ``--evolve`` rule as an Optuna sampler (:class:`EvolveSampler`), so
  the two can be compared on one budget and one storage.

Every sampler is seeded *per trial* (:class:`PerTrialSeed`): trial ``n`` draws from a stream
derived from ``(seed, n)``. Trial numbers are unique within a study, so two processes on one
storage, or a resumed run, never replay the same random draws (one shared seed would make both
processes sample identical start-up trials), while a single-process run stays reproducible.
Trial 0 of a study takes the base hyp (yolov5 starts from the given hyp), decided by its number
rather than queued: two processes starting on one empty storage would both queue it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import optuna

    from modyolo.tools.tune_space import SearchSpace

SAMPLERS = ("tpe", "cmaes", "random", "evolve")
PRUNERS = ("median", "hyperband", "none")

try:  # only for subclassing; the tune verb checks for optuna before importing this module
    from optuna.samplers import BaseSampler as _BaseSampler
except ImportError:  # pragma: no cover - exercised only without the 'tune' extra
    _BaseSampler = object  # type: ignore[assignment,misc]


def trial_seed(seed: int, number: int) -> int:
    """A well-mixed 32-bit seed for trial ``number`` of a study seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(_BaseSampler):
    """Delegate to ``factory(trial_seed(seed, trial.number))``, one fresh sampler per trial; trial 0
    takes ``first`` (the base hyp) when given.

    Works for samplers whose memory lives in the study (TPE, random, CMA-ES keeps its state in
    trial system attrs, :class:`EvolveSampler`), which is what makes them safe across processes.
    The storage hands out trial numbers atomically, so exactly one process runs the base hyp.
    """

    def __init__(
        self,
        factory: Callable[[int], optuna.samplers.BaseSampler],
        seed: int,
        first: dict[str, float] | None = None,
    ) -> None:
        self._factory, self._seed, self._first = factory, seed, first
        self._current: tuple[int, Any] | None = None

    def _for(self, trial: Any) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            self._current = (trial.number, self._factory(trial_seed(self._seed, trial.number)))
        return self._current[1]

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        if self._first is not None and trial.number == 0:
            return {}  # every value comes from sample_independent: the base hyp
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        first = self._first
        if first is not None and trial.number == 0 and param_name in first:
            return first[param_name]
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:  # type: ignore[no-untyped-def]
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current = None


class EvolveSampler(_BaseSampler):
    """yolov5 7.0's hyperparameter evolution as an Optuna sampler.

    The first trial takes the base values (yolov5 starts from the given hyp). Later trials pick a
    parent among the 5 best completed trials, weighted by ``fitness - min + 1e-6``, and multiply
    every key by ``clip(1 + gain * [u < 0.8] * N(0, 1) * U(0, 1) * 0.2, 0.3, 3.0)`` (drawn until at
    least one factor differs from 1), then clip to the bounds and round to 5 decimals. As in
    yolov5, a key at 0 stays 0 (the mutation is multiplicative) and a key with gain 0 never moves.
    """

    def __init__(
        self,
        base: dict[str, float],
        gains: dict[str, float],
        seed: int | None = None,
        top: int = 5,
        probability: float = 0.8,
        sigma: float = 0.2,
    ) -> None:
        self._base, self._gains = dict(base), dict(gains)
        self._rng = np.random.default_rng(seed)
        self._top, self._p, self._sigma = top, probability, sigma

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        from optuna.search_space import intersection_search_space

        done = self._completed(study)
        return intersection_search_space(done) if done else {}

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        done = self._completed(study)
        if not search_space or not done:
            return {}
        keys = list(search_space)
        parent = self._parent(done)
        gains = np.array([self._gains.get(k, 1.0) for k in keys], dtype=float)
        if not gains.any():  # all gains 0 would never mutate (yolov5 would loop forever)
            gains[:] = 1.0
        factors = self._factors(gains)
        out = {}
        for k, f in zip(keys, factors):
            dist = search_space[k]
            out[k] = _clip(round(float(parent.params[k]) * f, 5), dist.low, dist.high)
        return out

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        """A key outside the shared space: the base value, mutated once trials exist."""
        value = self._base.get(param_name)
        if value is None:
            value = (param_distribution.low + param_distribution.high) / 2
        if self._completed(study):
            value *= float(self._factors(np.array([self._gains.get(param_name, 1.0) or 1.0]))[0])
        return _clip(round(value, 5), param_distribution.low, param_distribution.high)

    def _completed(self, study) -> list:  # type: ignore[no-untyped-def]
        from optuna.trial import TrialState

        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]

    def _parent(self, done: list) -> Any:
        ranked = sorted(done, key=lambda t: t.value, reverse=True)[: self._top]
        fit = np.array([t.value for t in ranked], dtype=float)
        w = fit - fit.min() + 1e-6
        return ranked[int(self._rng.choice(len(ranked), p=w / w.sum()))]

    def _factors(self, gains: np.ndarray) -> np.ndarray:
        n = len(gains)
        v = np.ones(n)
        while np.all(v == 1):
            mutate = self._rng.random(n) < self._p
            v = (gains * mutate * self._rng.standard_normal(n) * self._rng.random() * self._sigma + 1).clip(0.3, 3.0)
        return v


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def make_sampler(
    name: str, seed: int, space: SearchSpace, base_params: dict[str, float], trials: int
) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (one of :data:`SAMPLERS`), seeded per trial from ``seed``."""
    import optuna

    if name == "tpe":
        startup = max(3, min(10, trials // 3))  # Optuna's 10 random start-up trials would be most of a small budget

        def factory(s: int) -> optuna.samplers.BaseSampler:
            with warnings.catch_warnings():  # multivariate/constant_liar are flagged experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(
                    seed=s, n_startup_trials=startup, multivariate=True, constant_liar=True
                )
    elif name == "random":

        def factory(s: int) -> optuna.samplers.BaseSampler:
            return optuna.samplers.RandomSampler(seed=s)
    elif name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ValueError(
                "--sampler cmaes needs the 'cmaes' package: pip install cmaes (or use --sampler tpe)"
            ) from e

        def factory(s: int) -> optuna.samplers.BaseSampler:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.CmaEsSampler(seed=s, n_startup_trials=1, warn_independent_sampling=False)
    elif name == "evolve":
        gains = {k: p.gain for k, p in space.params.items()}

        def factory(s: int) -> optuna.samplers.BaseSampler:
            return EvolveSampler(base_params, gains, seed=s)
    else:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return PerTrialSeed(factory, seed, first=base_params)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """``median``: stop a trial whose fitness is below the median of earlier trials at the same
    epoch (after a third of the epochs, so slow starters are not cut at once); ``hyperband``;
    ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, epochs // 3))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
