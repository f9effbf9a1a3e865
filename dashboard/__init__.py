"""The Streamlit dashboard (`gemma-monitor dashboard`): pages over the store's read side."""
