"""The dashboard's entry script: `streamlit run` runs this file (`gemma-monitor dashboard`)."""

from monitor.dashboard.shell import main

main()
