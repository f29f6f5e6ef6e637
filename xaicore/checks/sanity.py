"""Sanity checks of explanations by model-parameter randomization (Adebayo et al. 2018).

For every randomization step (see :mod:`xaicore.models.randomization`: *cascading* from the output
layer down, or *independent* one layer at a time) and every method, the explanation of the
randomized model is compared with the explanation of the trained model, for the same image:

* **target** -- by default the class explained on the trained model (``target``, or its
  prediction); with ``target_policy="randomized_prediction"`` the randomized model's own
  predicted class at that step;
* **maps** -- raw attributions (N, 3, H, W) become 2-D maps with a named normalization of
  :mod:`xaicore.metrics.similarity`: the *absolute* comparison uses ``normalization`` (default
  ``"abs"``: channel sum, absolute value, scaled to [0, 1]); the *signed* comparison always uses
  ``"signed"`` (channel sum scaled by its largest absolute value to [-1, 1]). Both names and
  their SSIM ``data_range`` are written in the result's parameters;
* **similarity** -- SSIM (equal to scikit-image's with the same settings; uniform 7x7 window by
  default) and Spearman rank correlation, each on the absolute and on the signed maps. They are
  computed on the model's device, batched over all steps, methods and images of one seed.

Several randomization seeds give a mean and a standard deviation (population, ``ddof=0``) per
step; the value of one seed is the mean over the images.

**Verdict** (one per method): a method *fails* when the mean SSIM of the absolute maps after
randomizing only the output layer (the first step of either schedule; both draw the same
weights for it) is at or above ``threshold`` (default 0.9): its explanation barely changes
when the weights that make the prediction are destroyed. It *passes* otherwise, and is
*undetermined* when the trained model's map has no signal (all zero) or a numerical error.

All randomization happens on one private copy of the model made at the start; the shared
``bundle.model`` is never changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaicore.checks.sanity_result import (
    DEFAULT_SEEDS,
    DEFAULT_THRESHOLD,
    KEEP_MAPS,
    KINDS,
    MAX_SEEDS,
    METRICS,
    MODES,
    TARGET_POLICIES,
    VERDICT_RULE,
    SanityResult,
    Verdict,
    check_threshold,
    judge_methods,
)
from xaicore.checks.step_explainer import StepExplainer
from xaicore.errors import ParameterError
from xaicore.explainers.gradients import chunk_size
from xaicore.explainers.registry import get_method
from xaicore.explainers.results import attribution_flags, attribution_status
from xaicore.metrics.similarity import get_normalization, prepare_maps, rank_maps, spearman_batch, ssim_batch
from xaicore.models.bundle import ModelBundle
from xaicore.models.randomization import LayerRandomizer
from xaicore.runtime.device import run_chunked
from xaicore.runtime.provenance import Provenance

ProgressFn = Callable[[int, int, str], None]


# ---------------------------------------------------------------------- computing


@dataclass
class _ScheduleOutputs:
    """What the steps of one schedule and seed produced, in step order (internal).

    ``maps[kind]`` (steps, methods, N, H, W); ``no_signal`` and ``numerical`` (steps, methods,
    N); ``targets`` (steps, N); ``values[metric]`` flat (steps * methods * N,).
    """

    maps: dict[str, torch.Tensor]
    no_signal: torch.Tensor
    numerical: torch.Tensor
    targets: torch.Tensor
    values: dict[str, torch.Tensor]

    def first_step(self) -> _ScheduleOutputs:
        per_step = self.values[METRICS[0]].numel() // self.targets.shape[0]
        return _ScheduleOutputs(
            {k: v[:1] for k, v in self.maps.items()},
            self.no_signal[:1],
            self.numerical[:1],
            self.targets[:1],
            {m: v[:per_step] for m, v in self.values.items()},
        )


@dataclass(frozen=True)
class _Plan:
    methods: tuple[str, ...]
    titles: tuple[str, ...]
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    normalizations: dict[str, str]
    method_params: dict[str, dict[str, Any]]


def run_sanity(
    bundle: ModelBundle,
    image_or_inputs: np.ndarray | torch.Tensor,
    *,
    methods: Sequence[str],
    mode: str | Sequence[str] = "cascading",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    target: int | str | Sequence[int] | None = None,
    target_policy: str = "original",
    normalization: str = "abs",
    threshold: float = DEFAULT_THRESHOLD,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
    attribution_seed: int = 0,
    keep_maps: str = "first",
    ssim_settings: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> SanityResult:
    """Run the layer-randomization sanity check of ``methods`` on one image (or a batch).

    Parameters
    ----------
    bundle:
        The model; never changed (a private copy is randomized).
    image_or_inputs:
        One image (H, W, 3) in [0, 1], a batch (N, H, W, 3), or model input (N, 3, H, W).
    methods:
        Registry names of explanation methods.
    mode:
        ``"cascading"``, ``"independent"``, ``"both"``, or a sequence of modes.
    seeds:
        Randomization seeds; mean and std are taken over them.
    target:
        Class to explain (index or label, one for all images or one per image); default: the
        trained model's prediction.
    target_policy:
        ``"original"`` (the same class at every step) or ``"randomized_prediction"`` (the
        randomized model's own predicted class at each step).
    normalization:
        Normalization of the absolute maps (see :data:`xaicore.metrics.similarity.NORMALIZATIONS`).
    threshold:
        SSIM at or above which a method fails (see :data:`VERDICT_RULE`).
    params, baseline, attribution_seed:
        Per-method parameters, baseline kind and seed of the explanations (the same seed for the
        trained and the randomized model, so that stochastic methods differ only by the weights).
    keep_maps:
        Randomized maps kept in the result: ``"first"`` seed (default, enough to draw the
        strips), ``"all"`` seeds, or ``"none"``.
    ssim_settings:
        Extra keyword arguments of :func:`xaicore.metrics.similarity.ssim_batch` (``win_size``,
        ``gaussian_weights``, ``sigma``, ``use_sample_covariance``).
    progress:
        ``progress(done, total, message)`` after the trained maps and after every step; the
        message names the mode, seed and randomized layer.
    """
    started = time.perf_counter()
    plan = _plan(bundle, methods, mode, seeds, target_policy, normalization, threshold, params, keep_maps)
    ssim_kw = _ssim_settings(ssim_settings)
    private, randomizer = LayerRandomizer.from_bundle(bundle)
    raw_input = image_or_inputs.detach() if isinstance(image_or_inputs, torch.Tensor) else image_or_inputs
    inputs = private.to_input(raw_input)
    explain = StepExplainer(
        private,
        inputs,
        methods=plan.methods,
        method_params=plan.method_params,
        baseline=baseline,
        seed=attribution_seed,
    )
    targets = private.resolve_targets(target, n=inputs.shape[0], logits=_logits(private.model, inputs))
    trained_raw = explain(targets)
    trained = {kind: _prepare(trained_raw, plan, kind) for kind in KINDS}
    runner = _Runner(
        randomizer,
        explain,
        plan,
        trained=trained,
        targets=targets,
        target_policy=target_policy,
        ssim_kw=ssim_kw,
        progress=progress,
    )
    outputs = [runner.schedule(m, s) for m in plan.modes for s in plan.seeds]
    trained_status = attribution_status(trained_raw, batch_dims=2)
    result_params = {
        "target_policy": target_policy,
        "normalizations": dict(plan.normalizations),
        "data_ranges": {k: get_normalization(v).data_range for k, v in plan.normalizations.items()},
        "ssim": {"win_size": 7, "gaussian_weights": False, "sigma": 1.5, "use_sample_covariance": True, **ssim_kw},
        "threshold": float(threshold),
        "seeds": list(plan.seeds),
        "attribution_seed": int(attribution_seed),
        "baseline": baseline,
        "method_params": plan.method_params,
        # the CAM methods' layer (None when none was checked)
        "cam_layer": bundle.cam_layer if any(get_method(m).needs_layer for m in plan.methods) else None,
        "keep_maps": keep_maps,
        "std": "population (ddof=0) over seeds of each seed's mean over images",
        "computation": explain.path,
    }
    keep = {"none": 0, "first": 1, "all": len(plan.seeds)}[keep_maps]
    arrays = _assemble(outputs, plan, keep=keep, steps=len(private.layers))
    return SanityResult(
        methods=plan.methods,
        titles=plan.titles,
        modes=plan.modes,
        layers=private.layers,
        seeds=plan.seeds,
        map_seeds=plan.seeds[:keep],
        image=inputs.permute(0, 2, 3, 1).cpu().numpy(),
        targets=targets.cpu().numpy(),
        step_targets=arrays.step_targets,
        values=arrays.values,
        trained_maps={kind: trained[kind].cpu().numpy().astype(np.float32) for kind in KINDS},
        maps=arrays.maps,
        no_signal=arrays.no_signal,
        numerical_error=arrays.numerical,
        trained_status=trained_status,
        verdicts=judge_methods(arrays.values["ssim_abs"], trained_status, plan.methods, threshold),
        params=result_params,
        provenance=Provenance(
            model_name=bundle.name,
            model_fingerprint=bundle.fingerprint,
            seed=plan.seeds[0],
            device=str(inputs.device),
            preprocessing=bundle.preprocess.frame_of(raw_input).record(),
        ),
        runtime_s=time.perf_counter() - started,
        labels=tuple(bundle.labels),
    )


class _Runner:
    """Runs the schedules on the private copy, one (mode, seed) at a time, reporting progress.

    Step 0 randomizes only the output layer, with the same weights in both schedules, so the
    second schedule of a seed reuses the first one's step-0 outputs instead of recomputing them.
    """

    def __init__(
        self,
        randomizer: LayerRandomizer,
        explain: StepExplainer,
        plan: _Plan,
        *,
        trained,
        targets,
        target_policy: str,
        ssim_kw: Mapping[str, Any],
        progress: ProgressFn | None,
    ) -> None:
        self._randomizer = randomizer
        self._explain = explain
        self._plan = plan
        self._trained = trained
        # the trained maps ranked once (methods x images rows) for every schedule's Spearman
        self._trained_ranks = {kind: rank_maps(trained[kind].flatten(0, 1)) for kind in KINDS}
        self._targets = targets
        self._policy = target_policy
        self._ssim_kw = ssim_kw
        self._progress = progress
        self._total = 1 + len(plan.modes) * len(plan.seeds) * len(randomizer.layers)
        self._done = 1
        self._output_step: dict[int, _ScheduleOutputs] = {}
        _report(progress, 1, self._total, "trained model")

    def schedule(self, mode: str, seed: int) -> _ScheduleOutputs:
        reused = self._output_step.get(seed)
        maps: dict[str, list[torch.Tensor]] = {k: [] for k in KINDS}
        flags: list[tuple[torch.Tensor, torch.Tensor]] = []
        targets: list[torch.Tensor] = []
        schedule = self._randomizer.cascading if mode == "cascading" else self._randomizer.independent
        with schedule(seed=seed) as steps:
            for step in steps:
                if step.index == 0 and reused is not None:
                    step_maps = {k: reused.maps[k][0] for k in KINDS}
                    step_flags, target = (reused.no_signal[0], reused.numerical[0]), reused.targets[0]
                else:
                    step_maps, step_flags, target = self._step()
                for kind in KINDS:
                    maps[kind].append(step_maps[kind])
                flags.append(step_flags)
                targets.append(target)
                self._done += 1
                _report(self._progress, self._done, self._total, f"{mode}, seed {seed}: randomized {step.layer}")
        stacked = {kind: torch.stack(maps[kind]) for kind in KINDS}
        skip = 0 if reused is None else 1
        values = _similarities(
            {k: v[skip:] for k, v in stacked.items()}, self._trained, self._trained_ranks, self._plan, self._ssim_kw
        )
        if reused is not None:
            values = {m: torch.cat([reused.values[m], values[m]]) for m in METRICS}
        out = _ScheduleOutputs(
            stacked,
            torch.stack([f[0] for f in flags]),
            torch.stack([f[1] for f in flags]),
            torch.stack(targets),
            values,
        )
        if reused is None:
            self._output_step[seed] = out.first_step()
        return out

    def _step(self) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Maps, flags and target of the private model as it is now."""
        target = self._targets
        if self._policy == "randomized_prediction":
            target = _logits(self._randomizer.model, self._explain.inputs).argmax(dim=1)
        raw = self._explain(target)
        return {kind: _prepare(raw, self._plan, kind) for kind in KINDS}, attribution_flags(raw, batch_dims=2), target


@dataclass(frozen=True)
class _Arrays:
    values: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]
    no_signal: np.ndarray
    numerical: np.ndarray
    step_targets: np.ndarray


def _assemble(outputs: Sequence[_ScheduleOutputs], plan: _Plan, *, keep: int, steps: int) -> _Arrays:
    """Stack the per-(mode, seed) outputs into the result's axes (one host transfer per array)."""
    modes, seeds, methods = len(plan.modes), len(plan.seeds), len(plan.methods)
    n, h, w = outputs[0].maps["abs"].shape[-3:]
    shape = (modes, seeds, steps, methods, n)

    def axes(parts: list[torch.Tensor]) -> np.ndarray:  # (modes, methods, seeds, steps, N)
        return torch.stack(parts).cpu().numpy().reshape(shape).transpose(0, 3, 1, 2, 4)

    maps = {}
    for kind in KINDS:
        kept = [o.maps[kind] for i, o in enumerate(outputs) if i % seeds < keep]
        if kept:
            stacked = torch.stack(kept).cpu().numpy().astype(np.float32)
            maps[kind] = stacked.reshape(modes, keep, steps, methods, n, h, w).transpose(0, 3, 1, 2, 4, 5, 6)
        else:
            maps[kind] = np.zeros((modes, methods, 0, steps, n, h, w), np.float32)
    return _Arrays(
        values={m: axes([o.values[m] for o in outputs]) for m in METRICS},
        maps=maps,
        no_signal=axes([o.no_signal for o in outputs]),
        numerical=axes([o.numerical for o in outputs]),
        step_targets=torch.stack([o.targets for o in outputs]).cpu().numpy().reshape(modes, seeds, steps, n),
    )


def _plan(bundle, methods, mode, seeds, target_policy, normalization, threshold, params, keep_maps) -> _Plan:
    from xaicore.explainers.api import resolve_methods

    specs = resolve_methods(methods or (), unique=True, available_on=bundle)
    names = tuple(spec.name for spec in specs)
    if isinstance(mode, str):
        modes = MODES if mode == "both" else (mode,)
    else:
        modes = tuple(mode)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise ParameterError(f"mode must be 'cascading', 'independent' or 'both'; got {mode!r}.")
    seeds = tuple(seeds)
    if len(seeds) > MAX_SEEDS:
        raise ParameterError(
            f"{len(seeds):,} seeds were asked for; a check takes at most {MAX_SEEDS} seeds (each is a randomized "
            "model per layer), and 5 to 10 already show the spread."
        )
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in seeds):
        raise ParameterError(f"Seeds must be whole numbers; got {seeds!r}.")
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ParameterError("Give at least one randomization seed, each seed once.")
    if target_policy not in TARGET_POLICIES:
        raise ParameterError(f"target_policy must be one of {', '.join(TARGET_POLICIES)}; got {target_policy!r}.")
    if get_normalization(normalization).name == "signed":
        raise ParameterError(
            "normalization names how ABSOLUTE maps are scaled ('abs' or 'abs_channel_max'); "
            "signed maps are always compared too, with the 'signed' normalization."
        )
    check_threshold(threshold)
    if keep_maps not in KEEP_MAPS:
        raise ParameterError(f"keep_maps must be one of {', '.join(KEEP_MAPS)}; got {keep_maps!r}.")
    params = dict(params or {})
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ParameterError(f"Parameters were given for {', '.join(unknown)}, which is not among the checked methods.")
    resolved = {spec.name: spec.resolve_params(params.get(spec.name)) for spec in specs}
    return _Plan(
        methods=names,
        titles=tuple(spec.title for spec in specs),
        modes=tuple(modes),
        seeds=seeds,
        normalizations={"abs": normalization, "signed": "signed"},
        method_params=resolved,
    )


def _ssim_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    allowed = {"win_size", "gaussian_weights", "sigma", "use_sample_covariance"}
    settings = dict(settings or {})
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ParameterError(f"Unknown SSIM setting {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")
    return settings


def _logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits of ``inputs`` in memory-sized chunks (halved on out-of-memory)."""

    @torch.no_grad()
    def part(start: int, stop: int) -> torch.Tensor:
        return model(inputs[start:stop])

    return run_chunked(part, inputs.shape[0], chunk=chunk_size(inputs[0]), combine=torch.cat)


def _prepare(raw: torch.Tensor, plan: _Plan, kind: str) -> torch.Tensor:
    m, n = raw.shape[:2]
    maps = prepare_maps(raw.flatten(0, 1), normalization=plan.normalizations[kind])
    return maps.reshape(m, n, *maps.shape[-2:])


def _similarities(
    stacked: Mapping[str, torch.Tensor],
    trained: Mapping[str, torch.Tensor],
    trained_ranks: Mapping[str, torch.Tensor],
    plan: _Plan,
    ssim_kw: Mapping[str, Any],
) -> dict[str, torch.Tensor]:
    """SSIM and Spearman of every (step, method, image) map against its trained map, batched;
    ``trained_ranks`` is :func:`rank_maps` of the trained maps, (methods x images) rows."""
    out = {}
    for kind in KINDS:
        randomized = stacked[kind]
        reference = trained[kind].unsqueeze(0).expand_as(randomized)
        a = randomized.flatten(0, 2)
        b = reference.flatten(0, 2)
        data_range = get_normalization(plan.normalizations[kind]).data_range
        out[f"ssim_{kind}"] = ssim_batch(a, b, data_range=data_range, **ssim_kw)
        ranks_b = (
            trained_ranks[kind].view(*trained[kind].shape[:2], -1).unsqueeze(0).expand(randomized.shape[0], -1, -1, -1)
        )
        out[f"spearman_{kind}"] = spearman_batch(a, b, ranks_b=ranks_b.flatten(0, 2))
    return out


def _report(progress: ProgressFn | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


__all__ = [  # the result's names are re-exported: one import for a run and what it returns
    "DEFAULT_SEEDS",
    "DEFAULT_THRESHOLD",
    "KEEP_MAPS",
    "KINDS",
    "MAX_SEEDS",
    "METRICS",
    "MODES",
    "TARGET_POLICIES",
    "VERDICT_RULE",
    "SanityResult",
    "Verdict",
    "run_sanity",
]
