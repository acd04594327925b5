"""Entry points: the ``sopagent`` CLI and the demo (the HTTP API arrives with the WeCom channel)."""
