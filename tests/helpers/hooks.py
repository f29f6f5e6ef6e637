"""Hooks left on a model after a run: the check shared by the concurrency and session tests."""

from __future__ import annotations

from torch import nn


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry a hook of any kind, plus global module hooks."""
    kinds = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
    )
    found = [
        f"{name or '<root>'}.{kind}"
        for name, module in model.named_modules()
        for kind in kinds
        if getattr(module, kind, None)
    ]
    from torch.nn.modules import module as torch_module

    for name in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    ):
        if getattr(torch_module, name, None):
            found.append(f"torch global {name}")
    return found
