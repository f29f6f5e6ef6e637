"""Streamlit drawing helpers of the pages: heatmap tiles, sanity plots, faithfulness curves, the model-input tile."""
