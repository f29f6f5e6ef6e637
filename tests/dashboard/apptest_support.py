"""Helpers for driving the dashboard with Streamlit's AppTest (shared by the dashboard tests).

- :func:`start` runs the app entry and returns the AppTest.
- :func:`open_page` switches to a page file (``"pages/explain.py"``) and runs it.
- :func:`upload_image` puts real bytes through the sidebar's real ``st.file_uploader``.
- :func:`use_model` makes a hand-built bundle the session's model the way an uploaded
  checkpoint does (the sidebar's "Upload a checkpoint" choice reads the session's model).
- :func:`degenerate_bundle` is a tiny hand-weighted model whose class 0 has no signal and
  whose class 1 has NaN gradients.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torch import nn

from dashboard import sidebar, state
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
TIMEOUT = 120


def start() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


def open_page(at: AppTest, page: str) -> AppTest:
    return at.switch_page(page).run()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_image(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    """Choose "Upload" in the sidebar and upload ``data`` through the real file uploader."""
    if not _has_uploader(at):
        at.radio(key=sidebar.W_SOURCE).set_value(sidebar.UPLOAD).run()
    at.file_uploader(key=sidebar.W_UPLOAD).set_value((name, data, mime))
    return at.run()


def _has_uploader(at: AppTest) -> bool:
    return any(w.key == sidebar.W_UPLOAD for w in at.file_uploader)


def use_model(at: AppTest, bundle: ModelBundle) -> AppTest:
    """Make ``bundle`` the session's model through the checkpoint choice of the sidebar."""
    at.session_state[state.UPLOADED_MODEL_KEY] = bundle
    at.selectbox(key=sidebar.W_MODEL).set_value(sidebar.UPLOAD_MODEL)
    return at.run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


class _NanGradient(torch.autograd.Function):
    """Zero forward; backward NaN wherever a gradient arrives (and zero elsewhere)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.sum(dim=(1, 2, 3)) * 0.0

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        nan = torch.where(grad != 0, torch.full_like(grad, float("nan")), torch.zeros_like(grad))
        return nan.view(-1, 1, 1, 1).expand(ctx.shape).contiguous()


class _Degenerate(nn.Module):
    """Three logits on a 3-channel image.

    class 0: a constant (zero times the features): every attribution is exactly zero;
    class 1: always zero, with a NaN gradient (:class:`_NanGradient`);
    class 2: 4 * mean of relu(red channel): an ordinary, positive class.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv(x)).mean(dim=(1, 2, 3))
        nothing = features * 0.0
        nan_grad = _NanGradient.apply(x)
        return torch.stack([nothing, nan_grad, 4.0 * features], dim=1)


def degenerate_bundle(*, unavailable: dict[str, str] | None = None) -> ModelBundle:
    model = PixelSpaceModel(_Degenerate()).eval()
    return ModelBundle(
        model=model,
        labels=("nothing", "nan", "red"),
        input_size=(16, 16),
        cam_layer="net.conv",
        layers=("net.conv",),
        name="Degenerate test model",
        fingerprint=fingerprint(model),
        unavailable=dict(unavailable or {}),
        source="test",
    )
