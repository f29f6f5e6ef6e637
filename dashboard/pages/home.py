"""Home: what the dashboard does and where to start."""

import streamlit as st

from dashboard import sidebar, state
from dashboard.navigation import PAGES
from dashboard.safe_text import plain

sidebar.render()

st.title("Look inside an image classifier")
st.markdown(
    """
Pick a **model** and an **image** in the sidebar (the embedded *Default shapes CNN* and the
sample images work offline; upload your own image or a state-dict checkpoint of a torchvision
architecture), then open a page. Start with **Explain**: a dozen explanation methods side by
side, with the model's top predictions, each method's runtime and status, and downloads of
the heatmaps, the raw attributions (`.npz`) and a JSON record of how they were made.

In the *all* view heatmaps are signed: red pushes the model towards the class, blue away from
it. A tile marked *no signal* or *numerical error* is a map that is all zero or not finite; it
is shown as a grey tile rather than stretched into a plausible picture.
"""
)

bundle, image = state.current_model(), state.current_image()
if bundle is not None and image is not None:
    st.success(f"Ready: {plain(bundle.name)} on {plain(image.name)}.")
for spec in PAGES:
    if spec.file != "home.py":
        st.page_link(f"pages/{spec.file}", label=spec.title, icon=spec.icon)
