"""Home: what the dashboard does and where to start."""

import streamlit as st

from dashboard import sidebar, state

sidebar.render()

st.title("Look inside an image classifier")
st.markdown(
    """
Pick a **model** and an **image** in the sidebar (the embedded *Default shapes CNN* and the
sample images work offline), then open a page:

- **Explain**: a dozen explanation methods side by side on your image, with the model's top
  predictions, per-method runtime and status, and downloads of the heatmaps, the raw
  attributions (`.npz`) and a JSON record of how they were made.

Heatmaps in the *all* view are signed: red pushes the model towards the class, blue away
from it. A tile marked *no signal* or *numerical error* means the method gave an all-zero or
non-finite map; it is shown as such rather than stretched into a plausible picture.
"""
)

bundle, image = state.current_model(), state.current_image()
if bundle is not None and image is not None:
    st.success(f"Ready: {bundle.name} on {image.name}.")
    st.page_link("pages/explain.py", label="Explain this image", icon=":material/compare:")
